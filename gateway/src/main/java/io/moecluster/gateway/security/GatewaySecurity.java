package io.moecluster.gateway.security;

import com.typesafe.config.Config;
import io.grpc.InsecureServerCredentials;
import io.grpc.ServerCredentials;
import io.grpc.TlsServerCredentials;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * The gateway's protection settings, read once from {@code moe.gateway}: TLS (and mutual TLS) of
 * the gRPC server, the API keys a client must present, and the per-client limit on concurrent
 * calls. Reading them checks every file, so a bad setting stops the node at start-up with a
 * message that names the key, never later at the first connection.
 *
 * @param tls the server's certificate files; empty = plaintext
 * @param apiKeys accepted API keys (from the list, the file and the environment variable together);
 *     empty = no authentication
 * @param maxStreamsPerClient Inference calls one client (API key, else peer address) may have open
 */
public record GatewaySecurity(Optional<TlsFiles> tls, List<String> apiKeys, int maxStreamsPerClient) {

  /**
   * The PEM files of the server's TLS identity.
   *
   * @param certChain the server's certificate, then its intermediates
   * @param privateKey the certificate's private key, PKCS#8 ("BEGIN PRIVATE KEY")
   * @param clientCa when present, clients must show a certificate signed by one of these
   *     authorities (mutual TLS)
   * @param reloadInterval how often a node looks at the certificate and key files again
   */
  public record TlsFiles(Path certChain, Path privateKey, Optional<Path> clientCa, Duration reloadInterval) {
    public TlsFiles {
      if (reloadInterval.isNegative() || reloadInterval.isZero()) {
        throw new IllegalArgumentException("moe.gateway.tls.reload-interval must be positive, got " + reloadInterval);
      }
    }

    /** Whether clients must present a certificate. */
    public boolean mutual() {
      return clientCa.isPresent();
    }
  }

  public GatewaySecurity {
    apiKeys = List.copyOf(apiKeys);
    for (String key : apiKeys) {
      if (key.isEmpty() || !key.chars().allMatch(c -> c > 0x20 && c < 0x7f)) {
        throw new IllegalArgumentException(
            "moe.gateway.api-keys: a key must be non-empty printable ASCII without spaces (it travels in"
                + " the 'authorization: Bearer <key>' header)");
      }
    }
    if (maxStreamsPerClient < 1) {
      throw new IllegalArgumentException(
          "moe.gateway.max-streams-per-client must be >= 1, got " + maxStreamsPerClient);
    }
  }

  /** No TLS, no API keys, a per-client limit that never binds (tests of other concerns). */
  public static GatewaySecurity open() {
    return new GatewaySecurity(Optional.empty(), List.of(), Integer.MAX_VALUE);
  }

  /** Reads {@code moe.gateway}, with the API-key variable read from the process environment. */
  public static GatewaySecurity fromConfig(Config config) {
    return fromConfig(config, System.getenv());
  }

  /**
   * Reads {@code moe.gateway} (tls, api-keys, api-keys-file, api-keys-env, max-streams-per-client)
   * and checks the files it names.
   *
   * @throws IllegalArgumentException with the key and the file when a setting is unusable
   */
  public static GatewaySecurity fromConfig(Config config, Map<String, String> environment) {
    Config c = config.getConfig("moe.gateway");
    Optional<TlsFiles> tls = tlsFiles(c.getConfig("tls"));
    tls.ifPresent(PemFiles::check);
    LinkedHashSet<String> keys = new LinkedHashSet<>(c.getStringList("api-keys"));
    String file = c.getString("api-keys-file").strip();
    if (!file.isEmpty()) {
      keys.addAll(readKeyFile(Path.of(file)));
    }
    String variable = c.getString("api-keys-env").strip();
    if (!variable.isEmpty() && environment.get(variable) != null) {
      List<String> fromVariable = splitKeys(environment.get(variable));
      if (fromVariable.isEmpty()) {
        // An empty variable is a missing secret (MOE_API_KEYS=${SECRET} with SECRET unset): serving
        // without keys would fail open.
        throw new IllegalArgumentException("moe.gateway.api-keys-env: $" + variable + " is set but holds no key;"
            + " unset it to serve without API keys");
      }
      keys.addAll(fromVariable);
    }
    return new GatewaySecurity(tls, new ArrayList<>(keys), c.getInt("max-streams-per-client"));
  }

  private static Optional<TlsFiles> tlsFiles(Config t) {
    String cert = t.getString("cert-chain").strip();
    String key = t.getString("private-key").strip();
    String ca = t.getString("client-ca").strip();
    if (cert.isEmpty() && key.isEmpty()) {
      if (!ca.isEmpty()) {
        throw new IllegalArgumentException(
            "moe.gateway.tls.client-ca is set but TLS is off: set moe.gateway.tls.cert-chain and"
                + " moe.gateway.tls.private-key too (mutual TLS needs a server certificate)");
      }
      return Optional.empty();
    }
    if (cert.isEmpty() || key.isEmpty()) {
      throw new IllegalArgumentException(
          "moe.gateway.tls: set both cert-chain and private-key (got only "
              + (cert.isEmpty() ? "private-key" : "cert-chain")
              + ")");
    }
    return Optional.of(new TlsFiles(Path.of(cert), Path.of(key),
        ca.isEmpty() ? Optional.empty() : Optional.of(Path.of(ca)), t.getDuration("reload-interval")));
  }

  /** One key per line; blank lines and lines starting with '#' are skipped. */
  static List<String> readKeyFile(Path file) {
    List<String> lines;
    try {
      lines = Files.readAllLines(file, StandardCharsets.UTF_8);
    } catch (IOException e) {
      throw new IllegalArgumentException(
          "moe.gateway.api-keys-file: cannot read " + file + " (" + PemFiles.reason(e) + ")");
    }
    List<String> keys = new ArrayList<>();
    for (String line : lines) {
      String s = line.strip();
      if (!s.isEmpty() && !s.startsWith("#")) {
        keys.add(s);
      }
    }
    if (keys.isEmpty()) {
      throw new IllegalArgumentException("moe.gateway.api-keys-file: " + file + " holds no key");
    }
    return keys;
  }

  /** A variable holds keys separated by commas or white space. */
  public static List<String> splitKeys(String value) {
    List<String> keys = new ArrayList<>();
    for (String s : value.split("[,\\s]+")) {
      if (!s.isEmpty()) {
        keys.add(s);
      }
    }
    return keys;
  }

  public boolean authenticates() {
    return !apiKeys.isEmpty();
  }

  /** The server's transport credentials: TLS (mutual when a client CA is set), else plaintext. */
  public ServerCredentials serverCredentials() {
    if (tls.isEmpty()) {
      return InsecureServerCredentials.create();
    }
    TlsFiles f = tls.get();
    try {
      TlsServerCredentials.Builder b =
          TlsServerCredentials.newBuilder().keyManager(f.certChain().toFile(), f.privateKey().toFile());
      if (f.clientCa().isPresent()) {
        b.trustManager(f.clientCa().get().toFile())
            .clientAuth(TlsServerCredentials.ClientAuth.REQUIRE);
      }
      return b.build();
    } catch (IOException e) {
      throw new IllegalArgumentException("moe.gateway.tls: cannot read the files (" + PemFiles.reason(e) + ")");
    }
  }

  /**
   * Why the settings deserve a warning at start-up, if they do: API keys over plaintext travel
   * readable to anyone on the path.
   */
  public Optional<String> warning() {
    if (authenticates() && tls.isEmpty()) {
      return Optional.of("API keys are required but the gRPC server is plaintext: keys cross the network"
          + " readable; set moe.gateway.tls (--tls-cert/--tls-key) outside a trusted network");
    }
    return Optional.empty();
  }

  /** One line for the start-up log; never the keys themselves. */
  public String describe() {
    String transport =
        tls.map(f -> f.mutual() ? "mutual TLS" : "TLS").orElse("plaintext");
    return transport
        + ", "
        + (apiKeys.isEmpty() ? "no API key" : apiKeys.size() + " API key(s)")
        + ", at most "
        + (maxStreamsPerClient == Integer.MAX_VALUE ? "unlimited" : String.valueOf(maxStreamsPerClient))
        + " calls per client";
  }
}
