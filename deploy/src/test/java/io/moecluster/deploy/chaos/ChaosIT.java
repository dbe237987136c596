package io.moecluster.deploy.chaos;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.typesafe.config.ConfigFactory;

import io.moecluster.core.checkpoint.CheckpointSpec;
import io.moecluster.core.checkpoint.CheckpointWriter;
import io.moecluster.core.checkpoint.Preset;
import io.moecluster.core.tensor.DType;
import java.io.PrintStream;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.Timeout;

/**
 * Failover end to end, through the harness of {@code moe chaos}: real multi-JVM clusters on
 * loopback serving a SMALL checkpoint, 16 seeded streams, a node SIGKILLed mid-generation, and
 * every stream checked token by token against the single-process reference. Each test starts and
 * stops its own cluster ({@link ChaosCluster#close()} kills what is left, also when a test fails
 * or times out); the node output goes to {@code target/chaos-it-*.log}. A test whose failover
 * feature is missing from the build is skipped with the reason (see {@link #assumeFeature}).
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class ChaosIT {
  private static final int STREAMS = 16;
  private static final int MAX_TOKENS = 24;

  /**
   * Bound on the stall of a stream across an expert node's death with two replicas. The target is
   * 0.5 s; measured with {@code moe chaos} on the 2-core build machine at load average 10-15: 384
   * ms max (docs/RELIABILITY.md). A loaded CI machine stretches every step (the normal ITL there
   * was 170 ms, several times a quiet machine's), so the test allows 4x the target: a stall of
   * seconds means the router reloaded the experts instead of switching replicas.
   */
  static final Duration REPLICA_STALL_BOUND = Duration.ofSeconds(2);

  private Path work;
  private Path model;

  /**
   * Whether this build has the failover feature a test needs, known by its config key in the
   * modules' reference.conf: expert retries ({@code moe.router.failover}), replicas ({@code
   * moe.expert.replicas}), stream resubmission to another router ({@code
   * moe.gateway.max-resubmissions}). Without it the scenario must fail (the harness reports the
   * lost streams, which {@code moe chaos} shows), so the test is skipped, saying why.
   */
  private static void assumeFeature(String key, String feature) {
    assumeTrue(ConfigFactory.defaultReference().hasPath(key),
        "this build has no " + feature + " (" + key + " is not in reference.conf); the scenario would lose streams");
  }

  @BeforeAll
  void writeModel() throws Exception {
    work = Files.createTempDirectory("moe-chaos-it");
    model = work.resolve("small");
    CheckpointWriter.write(CheckpointSpec.of(Preset.SMALL, DType.BF16, 7), model);
  }

  @AfterAll
  void cleanUp() throws Exception {
    if (work != null) {
      try (var files = Files.walk(work)) {
        files.sorted((a, b) -> b.compareTo(a)).forEach(p -> p.toFile().delete());
      }
    }
  }

  private ChaosReport run(Scenario scenario, int expertNodes, int replicas) throws Exception {
    SeededLoad.Settings load = new SeededLoad.Settings(STREAMS, Duration.ZERO, MAX_TOKENS, 11,
        ChaosRun.vocabSize(model), Duration.ofSeconds(100));
    ChaosRun.Settings settings = new ChaosRun.Settings(model, scenario, expertNodes, replicas, load, Duration.ZERO,
        MAX_TOKENS / 4, Duration.ofSeconds(2), 0, Duration.ofSeconds(150), Map.of(), 2);
    PrintWriter err = new PrintWriter(System.err, true);
    for (int attempt = 1; ; attempt++) {
      Path logFile = Path.of("target", "chaos-it-" + scenario.cliName() + "-r" + replicas + "-" + attempt + ".log");
      try (PrintStream nodeLog = new PrintStream(Files.newOutputStream(logFile), true, StandardCharsets.UTF_8)) {
        ChaosReport report = ChaosRun.run(settings, nodeLog, err);
        System.err.print(report.text());
        return report;
      } catch (IllegalStateException e) {
        // On a starved machine the failure detector (2 s heartbeat pause) may down a node that is
        // still starting: that is before any fault, so not what this test is about. Once more.
        if (attempt == 2 || !String.valueOf(e.getMessage()).startsWith("a node died before the cluster was serving")) {
          throw e;
        }
        System.err.println("ChaosIT: the cluster lost a node while starting; starting it again: " + e.getMessage());
      }
    }
  }

  private static void assertNothingLost(ChaosReport report) {
    assertEquals(1, report.faults().size(), "the fault was injected mid-generation:\n" + report.text());
    assertTrue(report.faults().get(0).analysis().affected() > 0, "the fault hit running streams:\n" + report.text());
    assertEquals(STREAMS, report.requests(), report.text());
    assertEquals(STREAMS, report.completed(), "every stream finishes:\n" + report.text());
    assertEquals(STREAMS, report.identical(), "every stream carries the reference's tokens:\n" + report.text());
    assertTrue(report.ok(), report.text());
  }

  @Test
  @Timeout(value = 7, unit = TimeUnit.MINUTES)
  void killAnExpertNodeMidGeneration() throws Exception {
    assumeFeature("moe.router.failover", "expert request retries");
    assertNothingLost(run(Scenario.KILL_EXPERT, 3, 1));
  }

  @Test
  @Timeout(value = 7, unit = TimeUnit.MINUTES)
  void killAnExpertNodeWithTwoReplicasStallsBriefly() throws Exception {
    assumeFeature("moe.router.failover", "expert request retries");
    assumeFeature("moe.expert.replicas", "expert replicas");
    ChaosReport report = run(Scenario.KILL_EXPERT, 3, 2);
    assertTrue(report.notes().stream().noneMatch(n -> n.contains("--replicas 2")), "replicas = 2 in force:\n"
        + report.text());
    assertNothingLost(report);
    long maxStall = report.faults().get(0).analysis().maxStallNanos();
    assertTrue(maxStall <= REPLICA_STALL_BOUND.toNanos(), "stall " + maxStall / 1_000_000 + " ms over the bound "
        + REPLICA_STALL_BOUND.toMillis() + " ms:\n" + report.text());
  }

  @Test
  @Timeout(value = 7, unit = TimeUnit.MINUTES)
  void killOneOfTwoRoutersMidGeneration() throws Exception {
    assumeFeature("moe.gateway.max-resubmissions", "stream resubmission to another router");
    ChaosReport report = run(Scenario.KILL_ROUTER, 1, 1);
    assertNothingLost(report);
  }
}
