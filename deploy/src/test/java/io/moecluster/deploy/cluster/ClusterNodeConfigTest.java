package io.moecluster.deploy.cluster;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.Config;
import java.nio.file.Path;
import java.time.Duration;
import java.util.EnumSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class ClusterNodeConfigTest {

  private static NodeSpec spec(Map<String, String> overrides) {
    return new NodeSpec(EnumSet.of(Role.GATEWAY, Role.EXPERT), "10.0.0.7", 25521,
        List.of(new HostPort("10.0.0.1", 25520), new HostPort("10.0.0.2", 25520)), Path.of("/models/small"),
        "0.0.0.0", 50051, overrides);
  }

  @Test
  void flagsBecomePekkoClusterSettings() {
    Config c = ClusterNode.config(spec(Map.of()));
    assertEquals("cluster", c.getString("pekko.actor.provider"));
    assertEquals("10.0.0.7", c.getString("pekko.remote.artery.canonical.hostname"));
    assertEquals(25521, c.getInt("pekko.remote.artery.canonical.port"));
    // Roles in start order, whatever order they were given in.
    assertEquals(List.of("expert", "gateway"), c.getStringList("pekko.cluster.roles"));
    assertEquals(List.of("pekko://moe@10.0.0.1:25520", "pekko://moe@10.0.0.2:25520"),
        c.getStringList("pekko.cluster.seed-nodes"));
  }

  @Test
  void theModelDirectoryReachesEveryRole() {
    Config c = ClusterNode.config(spec(Map.of()));
    String dir = Path.of("/models/small").toAbsolutePath().toString();
    assertEquals(dir, c.getString("moe.model-dir"));
    assertEquals(dir, c.getString("moe.expert.model-dir"));
    assertEquals(dir, c.getString("moe.router.model-dir"));
    assertEquals(dir, c.getString("moe.gateway.model-dir"));
  }

  @Test
  void nodeDefaultsComeFromMoeNodeConf() {
    Config c = ClusterNode.config(spec(Map.of()));
    // The command owns the process: Pekko must not call System.exit itself.
    assertFalse(c.getBoolean("pekko.coordinated-shutdown.exit-jvm"));
    assertTrue(c.getBoolean("pekko.coordinated-shutdown.run-by-jvm-shutdown-hook"));
    assertTrue(c.getDuration("pekko.coordinated-shutdown.phases.service-unbind.timeout")
        .compareTo(c.hasPath(ClusterNode.DRAIN_TIMEOUT_KEY) ? c.getDuration(ClusterNode.DRAIN_TIMEOUT_KEY)
            : Duration.ofSeconds(30)) > 0, "the drain must fit in its phase");
    assertEquals(50051, c.getInt("moe.gateway.grpc-port"));
    assertEquals("org.apache.pekko.cluster.sbr.SplitBrainResolverProvider",
        c.getString("pekko.cluster.downing-provider-class"));
    // reference.conf of the modules is still underneath.
    assertTrue(c.hasPath("pekko.actor.serialization-bindings"));
    // Submits of long prompts pass the ordinary lane's frame: the router takes them on the large one.
    assertEquals(java.util.List.of("/system/" + io.moecluster.router.RouterNode.ROUTER_NAME),
        c.getStringList("pekko.remote.artery.large-message-destinations"));
  }

  @Test
  void confOverridesWinOverFlagsAndParseAsHocon() {
    Map<String, String> conf = new LinkedHashMap<>();
    conf.put("pekko.remote.artery.canonical.port", "26000");
    conf.put("moe.gateway.max-running", "2");
    conf.put("moe.gateway.drain-timeout", "3s");
    conf.put("pekko.cluster.roles", "[router]");
    conf.put("moe.router.model-dir", "/data/models:v2"); // not HOCON: taken as a string
    Config c = ClusterNode.config(spec(conf));
    assertEquals(26000, c.getInt("pekko.remote.artery.canonical.port"));
    assertEquals(2, c.getInt("moe.gateway.max-running"));
    assertEquals(Duration.ofSeconds(3), c.getDuration("moe.gateway.drain-timeout"));
    assertEquals(List.of("router"), c.getStringList("pekko.cluster.roles"));
    assertEquals("/data/models:v2", c.getString("moe.router.model-dir"));
  }

  @Test
  void systemPropertiesSitBetweenFlagsAndFiles() {
    System.setProperty("moe.gateway.drain-timeout", "7s");
    System.setProperty("pekko.remote.artery.canonical.port", "1");
    try {
      com.typesafe.config.ConfigFactory.invalidateCaches();
      Config c = ClusterNode.config(spec(Map.of()));
      assertEquals(Duration.ofSeconds(7), c.getDuration("moe.gateway.drain-timeout"));
      assertEquals(25521, c.getInt("pekko.remote.artery.canonical.port"), "the --port flag wins");
    } finally {
      System.clearProperty("moe.gateway.drain-timeout");
      System.clearProperty("pekko.remote.artery.canonical.port");
      com.typesafe.config.ConfigFactory.invalidateCaches();
    }
  }

  @Test
  void aBadConfKeyIsAUserError() {
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
        () -> ClusterNode.config(spec(Map.of("moe..x", "1"))));
    assertTrue(e.getMessage().contains("--conf"), e.getMessage());
  }

  @Test
  void aMisspelledMoeKeyIsRefusedPekkosAndTheDispatchersAreNot() {
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
        () -> ClusterNode.config(spec(Map.of("moe.gateway.api-key-file", "/etc/moe/keys"))));
    assertTrue(e.getMessage().startsWith("--conf moe.gateway.api-key-file: no such setting"), e.getMessage());
    for (var nested : List.of(Map.of("moe.gateway", "{api-key-file = /etc/moe/keys}"),
        Map.of("moe", "{gateway {api-key-file = /etc/moe/keys}}"))) {
      IllegalArgumentException inside = assertThrows(IllegalArgumentException.class,
          () -> ClusterNode.config(spec(nested)), nested.toString());
      assertTrue(inside.getMessage().startsWith("--conf moe.gateway.api-key-file: no such setting"),
          inside.getMessage());
    }
    Config c = ClusterNode.config(spec(Map.of(
        "moe.expert.entity-dispatcher.thread-pool-executor.keep-alive-time", "2m",
        "pekko.cluster.some-new-setting", "on")));
    assertEquals(Duration.ofMinutes(2),
        c.getDuration("moe.expert.entity-dispatcher.thread-pool-executor.keep-alive-time"));
  }

  @Test
  void theDrainPhaseOfShutdownLastsAtLeastTheDrain() {
    Config defaults = ClusterNode.config(spec(Map.of()));
    Duration unbind = defaults.getDuration(ClusterNode.UNBIND_TIMEOUT_KEY);
    Duration drain = defaults.getDuration("moe.gateway.drain-timeout");
    assertTrue(unbind.compareTo(drain.plusSeconds(10)) >= 0, unbind.toString());
    Config longDrain = ClusterNode.config(spec(Map.of("moe.gateway.drain-timeout", "2m")));
    assertEquals(Duration.ofSeconds(130), longDrain.getDuration(ClusterNode.UNBIND_TIMEOUT_KEY));
  }

  @Test
  void theGrpcPortIsAFlagNotAConfOverride() {
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
        () -> spec(Map.of("moe.gateway.grpc-port", "50052")));
    assertTrue(e.getMessage().contains("--grpc-port"), e.getMessage());
  }

  @Test
  void noSeedsMeansNoSeedNodesInConfig() {
    NodeSpec alone = new NodeSpec(EnumSet.allOf(Role.class), "127.0.0.1", 0, List.of(), Path.of("m"), "127.0.0.1",
        0, Map.of());
    Config c = ClusterNode.config(alone);
    assertTrue(c.getStringList("pekko.cluster.seed-nodes").isEmpty());
    assertEquals(0, c.getInt("pekko.remote.artery.canonical.port"));
  }

  @Test
  void metricsPortComesFromTheFlagOrMoeNodeConf() {
    Config defaults = ClusterNode.config(spec(Map.of()));
    assertEquals(9400, defaults.getInt("moe.metrics.port"));
    assertEquals("", defaults.getString("moe.metrics.host"));
    NodeSpec flagged = new NodeSpec(EnumSet.of(Role.EXPERT), "127.0.0.1", 0, List.of(), Path.of("m"), "127.0.0.1",
        0, Map.of(), -1);
    assertEquals(-1, ClusterNode.config(flagged).getInt("moe.metrics.port"));
    assertThrows(IllegalArgumentException.class, () -> new NodeSpec(EnumSet.of(Role.EXPERT), "127.0.0.1", 0,
        List.of(), Path.of("m"), "127.0.0.1", 0, Map.of(), -2));
  }
}
