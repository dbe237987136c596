package io.moecluster.deploy.cluster;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.ManagedChannel;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.moecluster.core.checkpoint.CheckpointSpec;
import io.moecluster.core.checkpoint.CheckpointWriter;
import io.moecluster.core.checkpoint.Preset;
import io.moecluster.core.tensor.DType;
import io.moecluster.gateway.security.DevCertificates;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;
import java.util.EnumSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * A node's gateway serves a certificate renewed on disk to new connections without a restart, as
 * cert-manager or an ACME client renews it: after the files change, a client that trusts only the
 * new CA gets through and one that trusts only the old CA no longer does.
 */
@Timeout(value = 3, unit = TimeUnit.MINUTES)
class TlsReloadTest {
  @TempDir Path dir;

  @Test
  void aRenewedCertificateIsServedWithoutARestart() throws Exception {
    Path oldCerts = dir.resolve("old");
    Path newCerts = dir.resolve("new");
    Path served = dir.resolve("served");
    Files.createDirectories(served);
    DevCertificates.writeAll(oldCerts, List.of("127.0.0.1"), "pw".toCharArray(), Duration.ofDays(1));
    DevCertificates.writeAll(newCerts, List.of("127.0.0.1"), "pw".toCharArray(), Duration.ofDays(1));
    install(oldCerts, served);
    Path model = dir.resolve("tiny");
    CheckpointWriter.write(CheckpointSpec.of(Preset.TINY, DType.F32, 1), model);
    Map<String, String> conf = Map.of(
        "moe.gateway.tls.cert-chain", served.resolve("server.pem").toString(),
        "moe.gateway.tls.private-key", served.resolve("server-key.pem").toString(),
        "moe.gateway.tls.reload-interval", "200ms",
        "moe.gateway.api-keys-env", "\"\"",
        "moe.expert.compute-threads", "1",
        "moe.router.compute-threads", "1");
    ClusterNode node = ClusterNode.start(new NodeSpec(EnumSet.allOf(Role.class), "127.0.0.1", 0, List.of(), model,
        "127.0.0.1", 0, conf, -1));
    try {
      HostPort target = node.grpcAddress().orElseThrow();
      assertEquals(ServingStatus.SERVING, health(target, oldCerts, Duration.ofSeconds(60)));

      install(newCerts, served);
      assertEquals(ServingStatus.SERVING, health(target, newCerts, Duration.ofSeconds(20)),
          "a client of the new CA gets through once the files are read again");
      assertNotEquals(ServingStatus.SERVING, health(target, oldCerts, Duration.ofSeconds(2)),
          "the old certificate is no longer served");

      // A wrong pair (the old certificate with the new key) is not taken: the last good one stays.
      Path mixed = dir.resolve("mixed");
      Files.createDirectories(mixed);
      Files.copy(oldCerts.resolve("server.pem"), mixed.resolve("server.pem"));
      Files.copy(newCerts.resolve("server-key.pem"), mixed.resolve("server-key.pem"));
      install(mixed, served);
      Thread.sleep(1_000); // five reload intervals
      assertEquals(ServingStatus.SERVING, health(target, newCerts, Duration.ofSeconds(5)));
      assertNotEquals(ServingStatus.SERVING, health(target, oldCerts, Duration.ofSeconds(1)));
    } finally {
      node.shutdown();
    }
  }

  /** Puts the server's certificate and key of {@code from} in place, each file replaced whole. */
  private static void install(Path from, Path to) throws Exception {
    for (String f : List.of("server-key.pem", "server.pem")) {
      Path tmp = to.resolve(f + ".tmp");
      Files.copy(from.resolve(f), tmp, StandardCopyOption.REPLACE_EXISTING);
      Files.move(tmp, to.resolve(f), StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }
  }

  /** SERVING as soon as a client that trusts {@code ca}'s CA gets it within {@code within}; else the last status. */
  private static ServingStatus health(HostPort target, Path ca, Duration within) throws InterruptedException {
    long deadline = System.nanoTime() + within.toNanos();
    ServingStatus last;
    do {
      ManagedChannel channel = ClientChannels.open(target, new ClientChannels.Security(true,
          Optional.of(ca.resolve("ca.pem")), Optional.empty(), Optional.empty(), Optional.empty(), Optional.empty()));
      try {
        last = Gateways.health(channel, Duration.ofSeconds(2));
      } finally {
        Gateways.close(channel);
      }
      if (last == ServingStatus.SERVING) {
        return last;
      }
      Thread.sleep(200);
    } while (System.nanoTime() < deadline);
    return last;
  }
}
