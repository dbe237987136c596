package io.moecluster.gateway;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.cluster.MemberStatus;
import org.apache.pekko.cluster.typed.Cluster;
import org.apache.pekko.cluster.typed.Join;

/** One-node Pekko clusters for tests: loopback, port 0, messages serialized, joined to itself. */
final class TestClusters {
  private TestClusters() {}

  static Config config(List<String> roles) {
    return ConfigFactory.parseString(
            """
            pekko.loglevel = WARNING
            pekko.actor.provider = cluster
            pekko.actor.serialize-messages = on
            pekko.remote.artery.canonical.hostname = 127.0.0.1
            pekko.remote.artery.canonical.port = 0
            pekko.cluster.jmx.multi-mbeans-in-same-jvm = on
            pekko.cluster.downing-provider-class = ""
            pekko.coordinated-shutdown.exit-jvm = off
            pekko.cluster.shutdown-after-unsuccessful-join-seed-nodes = off
            """)
        .withFallback(
            ConfigFactory.parseString(
                "pekko.cluster.roles = ["
                    + String.join(",", roles.stream().map(r -> "\"" + r + "\"").toList())
                    + "]"))
        .withFallback(ConfigFactory.load());
  }

  /** Starts a system that is the seed of its own cluster and waits until it is Up. */
  static ActorSystem<Void> start(String name, List<String> roles) {
    return start(name, config(roles));
  }

  static ActorSystem<Void> start(String name, Config config) {
    ActorSystem<Void> system = ActorSystem.create(Behaviors.empty(), name, config);
    Cluster cluster = Cluster.get(system);
    cluster.manager().tell(Join.create(cluster.selfMember().address()));
    Instant deadline = Instant.now().plus(Duration.ofSeconds(15));
    while (cluster.selfMember().status() != MemberStatus.up()) {
      if (Instant.now().isAfter(deadline)) {
        system.terminate();
        throw new IllegalStateException("the test node did not come Up");
      }
      sleep(20);
    }
    return system;
  }

  static void stop(ActorSystem<?> system) {
    if (system != null) {
      system.terminate();
      try {
        system
            .getWhenTerminated()
            .toCompletableFuture()
            .get(15, java.util.concurrent.TimeUnit.SECONDS);
      } catch (Exception e) {
        // best effort
      }
    }
  }

  static void sleep(long millis) {
    try {
      Thread.sleep(millis);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(e);
    }
  }
}
