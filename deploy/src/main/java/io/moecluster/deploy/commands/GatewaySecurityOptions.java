package io.moecluster.deploy.commands;

import com.typesafe.config.ConfigUtil;
import java.nio.file.Path;
import java.util.Map;
import picocli.CommandLine.Option;

/**
 * The gateway's TLS and API-key flags of {@code moe serve} and {@code moe node}: shorthands for
 * the {@code moe.gateway.tls.*} and {@code moe.gateway.api-keys-file} settings. A {@code --conf}
 * of the same key wins, as {@code --conf} always does.
 */
final class GatewaySecurityOptions {
  @Option(names = "--tls-cert", paramLabel = "FILE",
      description = "PEM certificate chain of the gateway: serve gRPC over TLS (with --tls-key)")
  Path cert;

  @Option(names = "--tls-key", paramLabel = "FILE", description = "PKCS#8 PEM private key of --tls-cert")
  Path key;

  @Option(names = "--tls-client-ca", paramLabel = "FILE",
      description = "PEM file of the CA(s) of client certificates: require mutual TLS")
  Path clientCa;

  @Option(names = "--api-keys-file", paramLabel = "FILE",
      description = "file of API keys, one per line: calls need 'authorization: Bearer KEY' (keys also come from"
          + " $MOE_API_KEYS)")
  Path apiKeysFile;

  /** Adds the given flags to {@code conf} as settings, unless {@code conf} already sets the key. */
  void addTo(Map<String, String> conf) {
    put(conf, "moe.gateway.tls.cert-chain", cert);
    put(conf, "moe.gateway.tls.private-key", key);
    put(conf, "moe.gateway.tls.client-ca", clientCa);
    put(conf, "moe.gateway.api-keys-file", apiKeysFile);
  }

  private static void put(Map<String, String> conf, String key, Path value) {
    if (value != null) {
      // Quoted: a path may hold characters HOCON reads otherwise ('//' starts a comment).
      conf.putIfAbsent(key, ConfigUtil.quoteString(value.toAbsolutePath().toString()));
    }
  }
}
