package io.moecluster.deploy.commands;

import io.grpc.ManagedChannel;
import io.moecluster.deploy.cluster.ClientChannels;
import io.moecluster.deploy.cluster.HostPort;
import java.nio.file.Path;
import java.util.Optional;
import java.util.concurrent.atomic.AtomicBoolean;
import picocli.CommandLine.Option;

/** The TLS and API-key flags of the commands that call a gateway ({@code moe client}, {@code moe bench}). */
final class ClientSecurityOptions {
  /** The variable the API key is read from when --api-key is not given. */
  static final String API_KEY_ENV = "MOE_API_KEY";

  @Option(names = "--tls", description = "connect with TLS (implied by --ca, --client-cert and --tls-server-name)")
  boolean tls;

  @Option(names = "--ca", paramLabel = "FILE", description = "PEM file of the CA(s) that signed the gateway's certificate"
      + " (default: the JVM's trusted CAs)")
  Path ca;

  @Option(names = "--client-cert", paramLabel = "FILE", description = "PEM certificate chain for mutual TLS")
  Path clientCert;

  @Option(names = "--client-key", paramLabel = "FILE", description = "PKCS#8 PEM private key of --client-cert")
  Path clientKey;

  @Option(names = "--tls-server-name", paramLabel = "NAME",
      description = "the name the gateway's certificate must carry, when it is not the --target host")
  String serverName;

  @Option(names = "--api-key", paramLabel = "KEY",
      description = "API key sent as 'authorization: Bearer KEY' (default: $" + API_KEY_ENV + "; prefer the variable,"
          + " a flag shows in the process list)")
  String apiKey;

  ClientChannels.Security security() {
    String key = apiKey != null ? apiKey : System.getenv(API_KEY_ENV);
    return new ClientChannels.Security(tls, Optional.ofNullable(ca), Optional.ofNullable(clientCert),
        Optional.ofNullable(clientKey), Optional.ofNullable(serverName), Optional.ofNullable(key));
  }

  ManagedChannel channel(HostPort target) {
    ClientChannels.Security security = security();
    if (security.apiKey().isPresent() && !security.usesTls() && !loopback(target.host())
        && WARNED.compareAndSet(false, true)) {
      System.err.println("moe: warning: the API key goes to " + target + " without TLS, readable on the network;"
          + " give --tls (and --ca) if the gateway serves TLS");
    }
    return ClientChannels.open(target, security);
  }

  private static final AtomicBoolean WARNED = new AtomicBoolean();

  /** Loopback by its name alone (no lookup): a key sent there does not cross a network. */
  static boolean loopback(String host) {
    String h = host.startsWith("[") && host.endsWith("]") ? host.substring(1, host.length() - 1) : host;
    return h.equalsIgnoreCase("localhost") || h.startsWith("127.") || h.equals("::1");
  }
}
