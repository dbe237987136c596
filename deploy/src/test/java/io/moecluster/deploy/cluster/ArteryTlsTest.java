package io.moecluster.deploy.cluster;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import com.typesafe.config.ConfigValueFactory;
import io.moecluster.gateway.security.DevCertificates;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import org.apache.pekko.actor.Address;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.cluster.MemberStatus;
import org.apache.pekko.cluster.typed.Cluster;
import org.apache.pekko.cluster.typed.Join;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Pekko Artery over TLS ({@code transport = tls-tcp}) with certificates made for the test, as the
 * README's "Security" section configures it: two nodes whose stores share a CA form a cluster; a
 * node whose certificate another CA signed cannot join (the handshake fails both ways), and the
 * cluster goes on without it.
 */
@Timeout(value = 90, unit = TimeUnit.SECONDS)
class ArteryTlsTest {
  private static final String PASSWORD = "changeit";

  @TempDir Path trusted;
  @TempDir Path untrusted;
  private final List<ActorSystem<Void>> systems = new ArrayList<>();

  @AfterEach
  void stop() {
    // One after the other, the last started first.
    for (ActorSystem<Void> s : systems.reversed()) {
      s.terminate();
      try {
        s.getWhenTerminated().toCompletableFuture().get(20, TimeUnit.SECONDS);
      } catch (Exception e) {
        // best effort
      }
    }
  }

  /** A node of system "moe" on a free port, speaking tls-tcp with the stores in {@code certs}. */
  static Config tlsConfig(Path certs, String keyStore) {
    return ConfigFactory.parseString(
            """
            pekko.loglevel = WARNING
            pekko.actor.provider = cluster
            pekko.remote.artery.transport = tls-tcp
            pekko.remote.artery.canonical.hostname = 127.0.0.1
            pekko.remote.artery.canonical.port = 0
            pekko.remote.artery.ssl.config-ssl-engine {
              key-store = "%1$s/%2$s"
              key-store-password = "%3$s"
              key-password = "%3$s"
              trust-store = "%1$s/truststore.p12"
              trust-store-password = "%3$s"
            }
            pekko.cluster.jmx.multi-mbeans-in-same-jvm = on
            pekko.cluster.downing-provider-class = ""
            pekko.cluster.shutdown-after-unsuccessful-join-seed-nodes = off
            pekko.coordinated-shutdown.exit-jvm = off
            pekko.coordinated-shutdown.run-by-jvm-shutdown-hook = off
            """.formatted(certs.toString().replace("\\", "/"), keyStore, PASSWORD))
        .withFallback(ConfigFactory.load());
  }

  private ActorSystem<Void> node(Path certs, String keyStore) {
    ActorSystem<Void> s = ActorSystem.create(Behaviors.empty(), "moe", tlsConfig(certs, keyStore));
    systems.add(s);
    return s;
  }

  private static int up(ActorSystem<?> s) {
    int n = 0;
    for (var m : Cluster.get(s).state().getMembers()) {
      if (m.status() == MemberStatus.up()) {
        n++;
      }
    }
    return n;
  }

  private static void await(String what, Duration timeout, BooleanSupplier condition) throws InterruptedException {
    Instant deadline = Instant.now().plus(timeout);
    while (!condition.getAsBoolean()) {
      if (Instant.now().isAfter(deadline)) {
        throw new AssertionError("timed out waiting for " + what);
      }
      Thread.sleep(50);
    }
  }

  @Test
  void storesThatCannotBeOpenedStopTheNodeBeforeItStarts() throws Exception {
    DevCertificates.writeAll(trusted, List.of("127.0.0.1"), PASSWORD.toCharArray(), Duration.ofDays(1));
    ArteryTlsStores.check(tlsConfig(trusted, "server.p12")); // usable: no error
    String engine = ArteryTlsStores.ENGINE_KEY;
    IllegalArgumentException missing = assertThrows(IllegalArgumentException.class,
        () -> ArteryTlsStores.check(tlsConfig(trusted, "nodes.p12")));
    assertEquals(engine + ".key-store: " + trusted.resolve("nodes.p12").toString().replace("\\", "/")
        + " does not exist", missing.getMessage());
    IllegalArgumentException storePassword = assertThrows(
        IllegalArgumentException.class, () -> ArteryTlsStores.check(tlsConfig(trusted, "server.p12")
            .withValue(engine + ".trust-store-password", ConfigValueFactory.fromAnyRef("nope"))));
    assertTrue(
        storePassword.getMessage().startsWith(engine + ".trust-store: cannot open"), storePassword.getMessage());
    IllegalArgumentException keyPassword = assertThrows(
        IllegalArgumentException.class, () -> ArteryTlsStores.check(tlsConfig(trusted, "server.p12")
            .withValue(engine + ".key-password", ConfigValueFactory.fromAnyRef("nope"))));
    assertTrue(keyPassword.getMessage().startsWith(engine + ".key-password: cannot recover the key"),
        keyPassword.getMessage());
    // Plain tcp: nothing to open.
    ArteryTlsStores.check(tlsConfig(trusted, "nodes.p12")
        .withValue(ArteryTlsStores.TRANSPORT_KEY, ConfigValueFactory.fromAnyRef("tcp")));
  }

  @Test
  void nodesWithCertificatesOfOneCaFormAClusterAndAnUntrustedNodeCannotJoin() throws Exception {
    DevCertificates.writeAll(trusted, List.of("127.0.0.1"), PASSWORD.toCharArray(), Duration.ofDays(1));
    DevCertificates.writeAll(untrusted, List.of("127.0.0.1"), PASSWORD.toCharArray(), Duration.ofDays(1));

    ActorSystem<Void> seed = node(trusted, "server.p12");
    Address seedAddress = Cluster.get(seed).selfMember().address();
    Cluster.get(seed).manager().tell(Join.create(seedAddress));
    // The client certificate of the same CA is as good as the server's: Artery checks the chain.
    ActorSystem<Void> second = node(trusted, "client.p12");
    Cluster.get(second).manager().tell(Join.create(seedAddress));
    await("two nodes Up over TLS", Duration.ofSeconds(30), () -> up(seed) == 2 && up(second) == 2);

    ActorSystem<Void> stranger = node(untrusted, "server.p12");
    Cluster.get(stranger).manager().tell(Join.create(seedAddress));
    // Join attempts are retried every few seconds; give it several.
    Thread.sleep(8_000);
    assertNotEquals(MemberStatus.up(), Cluster.get(stranger).selfMember().status());
    assertEquals(2, countMembers(seed), "the seed never admitted the stranger");
    assertEquals(2, up(seed));
  }

  private static int countMembers(ActorSystem<?> s) {
    int n = 0;
    for (var ignored : Cluster.get(s).state().getMembers()) {
      n++;
    }
    return n;
  }
}
