package io.moecluster.expert;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import java.time.Duration;
import java.util.List;
import java.util.function.BooleanSupplier;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.cluster.MemberStatus;
import org.apache.pekko.cluster.typed.Cluster;
import org.apache.pekko.cluster.typed.Join;

/** Real clusters of a few ActorSystems in this JVM over loopback, for the tests. */
public final class TestClusters {
  private TestClusters() {}

  /** A cluster node config: Artery on a free loopback port, every message serialized. */
  public static Config nodeConfig(String roles, String extra) {
    return ConfigFactory.parseString(
            """
            pekko.actor.provider = cluster
            pekko.remote.artery.canonical.hostname = 127.0.0.1
            pekko.remote.artery.canonical.port = 0
            pekko.actor.serialize-messages = on
            pekko.actor.allow-java-serialization = off
            pekko.cluster.roles = [%s]
            pekko.cluster.jmx.multi-mbeans-in-same-jvm = on
            pekko.cluster.sharding.retry-interval = 200ms
            pekko.cluster.sharding.coordinator-state.write-majority-plus = 0
            pekko.cluster.sharding.coordinator-state.read-majority-plus = 0
            pekko.coordinated-shutdown.run-by-jvm-shutdown-hook = off
            pekko.loglevel = WARNING
            pekko.loggers = ["org.apache.pekko.event.slf4j.Slf4jLogger"]
            pekko.logging-filter = "org.apache.pekko.event.slf4j.Slf4jLoggingFilter"
            """.formatted(roles))
        .withFallback(ConfigFactory.parseString(extra))
        .withFallback(ConfigFactory.load());
  }

  /** Joins every system to the first one and waits until all are Up. */
  public static void form(List<ActorTestKit> kits, Duration timeout) {
    var seed = Cluster.get(kits.get(0).system()).selfMember().address();
    for (ActorTestKit kit : kits) {
      Cluster.get(kit.system()).manager().tell(Join.create(seed));
    }
    await(timeout, "all " + kits.size() + " members Up", () -> kits.stream().allMatch(k -> {
      var state = Cluster.get(k.system()).state();
      long up = 0;
      for (var m : state.getMembers()) {
        if (m.status() == MemberStatus.up()) {
          up++;
        }
      }
      return up == kits.size();
    }));
  }

  public static void await(Duration timeout, String what, BooleanSupplier condition) {
    long deadline = System.nanoTime() + timeout.toNanos();
    while (!condition.getAsBoolean()) {
      if (System.nanoTime() > deadline) {
        throw new AssertionError("timed out waiting for " + what);
      }
      try {
        Thread.sleep(50);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new AssertionError(e);
      }
    }
  }

  /** Stops the systems one after the other, last joined first (all at once makes exits time out). */
  public static void stopAll(List<ActorTestKit> kits) {
    for (int i = kits.size() - 1; i >= 0; i--) {
      ActorTestKit.shutdown(kits.get(i).system(), Duration.ofSeconds(20), false);
    }
  }

  public static String address(ActorSystem<?> system) {
    return Cluster.get(system).selfMember().address().toString();
  }
}
