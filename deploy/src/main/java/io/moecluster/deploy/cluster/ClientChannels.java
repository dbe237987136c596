package io.moecluster.deploy.cluster;

import io.grpc.ChannelCredentials;
import io.grpc.ClientInterceptor;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Metadata;
import io.grpc.TlsChannelCredentials;
import io.grpc.stub.MetadataUtils;
import io.moecluster.gateway.security.PemFiles;
import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Optional;
import java.util.concurrent.TimeUnit;

/**
 * Builds the gRPC channel of a client command ({@code moe client}, {@code moe bench}) to a gateway:
 * plaintext, TLS (trusting the system's CAs or a given CA file), mutual TLS (with a client
 * certificate), and the API key as {@code authorization: Bearer <key>} on every call. Files are
 * checked up front, so a bad one is a usage error naming the flag.
 */
public final class ClientChannels {
  private ClientChannels() {}

  /**
   * How to reach a gateway securely.
   *
   * @param tls whether to use TLS (implied by any of the files)
   * @param ca PEM file of the CAs to trust; empty = the JVM's default trust store
   * @param clientCert PEM certificate chain for mutual TLS (with {@code clientKey})
   * @param clientKey PKCS#8 PEM key of {@code clientCert}
   * @param serverName the name to verify the server's certificate against, when it differs from the
   *     target's host (connecting by IP to a certificate for a DNS name)
   * @param apiKey sent on every call when present
   */
  public record Security(boolean tls, Optional<Path> ca, Optional<Path> clientCert, Optional<Path> clientKey,
      Optional<String> serverName, Optional<String> apiKey) {

    public static final Security PLAINTEXT =
        new Security(false, Optional.empty(), Optional.empty(), Optional.empty(), Optional.empty(), Optional.empty());

    public Security {
      if (clientCert.isPresent() != clientKey.isPresent()) {
        throw new IllegalArgumentException("--client-cert and --client-key go together: give both or neither");
      }
      apiKey = apiKey.map(String::strip).filter(k -> !k.isEmpty());
      if (apiKey.isPresent() && !apiKey.get().chars().allMatch(c -> c > 0x20 && c < 0x7f)) {
        throw new IllegalArgumentException("--api-key: a key is printable ASCII without spaces");
      }
    }

    /** TLS is on when asked for or when any TLS file is given. */
    public boolean usesTls() {
      return tls || ca.isPresent() || clientCert.isPresent() || serverName.isPresent();
    }
  }

  /**
   * How long a call's connection may stay silent before the client pings the gateway, and how long
   * it waits for the answer. A gateway that stops answering without closing the connection (a
   * paused or frozen process, a host lost from the network) then fails the call UNAVAILABLE, which
   * the client's failover acts on, instead of leaving it waiting forever. gRPC allows no less than
   * 10 s between pings; the gateway permits pings every 10 s.
   */
  public static final Duration KEEPALIVE_TIME = Duration.ofSeconds(20);

  public static final Duration KEEPALIVE_TIMEOUT = Duration.ofSeconds(10);

  /** A channel to {@code target}; close it with {@link Gateways#close(ManagedChannel)}. */
  public static ManagedChannel open(HostPort target, Security security) {
    return open(target, security, KEEPALIVE_TIME, KEEPALIVE_TIMEOUT);
  }

  static ManagedChannel open(HostPort target, Security security, Duration keepAliveTime, Duration keepAliveTimeout) {
    ManagedChannelBuilder<?> builder = Grpc.newChannelBuilder(target.toString(), credentials(security))
        .keepAliveTime(keepAliveTime.toNanos(), TimeUnit.NANOSECONDS)
        .keepAliveTimeout(keepAliveTimeout.toNanos(), TimeUnit.NANOSECONDS);
    security.serverName().ifPresent(builder::overrideAuthority);
    security.apiKey().ifPresent(key -> builder.intercept(bearer(key)));
    return builder.build();
  }

  /** Sends {@code key} as {@code authorization: Bearer <key>} on every call. */
  static ClientInterceptor bearer(String key) {
    Metadata headers = new Metadata();
    headers.put(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER), "Bearer " + key);
    return MetadataUtils.newAttachHeadersInterceptor(headers);
  }

  static ChannelCredentials credentials(Security s) {
    if (!s.usesTls()) {
      return InsecureChannelCredentials.create();
    }
    TlsChannelCredentials.Builder b = TlsChannelCredentials.newBuilder();
    try {
      if (s.ca().isPresent()) {
        PemFiles.certificates(s.ca().get(), "--ca");
        b.trustManager(s.ca().get().toFile());
      }
      if (s.clientCert().isPresent()) {
        PemFiles.certificates(s.clientCert().get(), "--client-cert");
        PemFiles.privateKey(s.clientKey().get(), "--client-key");
        b.keyManager(s.clientCert().get().toFile(), s.clientKey().get().toFile());
      }
    } catch (IOException e) {
      throw new IllegalArgumentException("cannot read the TLS files: " + e.getMessage());
    }
    return b.build();
  }
}
