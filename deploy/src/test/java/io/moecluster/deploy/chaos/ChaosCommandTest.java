package io.moecluster.deploy.chaos;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moecluster.core.checkpoint.CheckpointSpec;
import io.moecluster.core.checkpoint.CheckpointWriter;
import io.moecluster.core.checkpoint.Preset;
import io.moecluster.core.tensor.DType;
import io.moecluster.deploy.MoeRun;
import java.nio.file.Path;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/** Bad flags of {@code moe chaos}: exit 2 with a message, before any JVM is started. */
@Timeout(30)
class ChaosCommandTest {
  @TempDir static Path tmp;
  static Path model;

  @BeforeAll
  static void writeModel() {
    model = tmp.resolve("tiny");
    CheckpointWriter.write(CheckpointSpec.of(Preset.TINY, DType.F32, 1), model);
  }


  private static MoeRun run(String... args) {
    return MoeRun.of(args);
  }

  private static void assertUsage(String expected, String... args) {
    String[] full = new String[args.length + 3];
    full[0] = "chaos";
    full[1] = "--model";
    full[2] = model.toString();
    System.arraycopy(args, 0, full, 3, args.length);
    MoeRun r = run(full);
    assertEquals(2, r.exitCode(), r.err());
    assertTrue(r.err().startsWith("moe: ") && r.err().contains(expected), "stderr: " + r.err());
    assertEquals("", r.out());
  }

  @Test
  void badFlagsAreUsageErrors() {
    assertUsage("unknown scenario 'kill-all'", "--scenario", "kill-all");
    assertUsage("--streams must be >= 1", "--scenario", "kill-expert", "--streams", "0");
    assertUsage("--replicas must be 1 or 2", "--scenario", "kill-expert", "--replicas", "3");
    assertUsage("expert faults need at least 3 expert JVMs", "--scenario", "all", "--expert-nodes", "2");
    assertUsage("--max-tokens must be >= 2", "--scenario", "pause-expert", "--max-tokens", "1");
    assertUsage("--fault-after-tokens must be in [1, --max-tokens - 1]", "--scenario", "kill-expert",
        "--max-tokens", "8", "--fault-after-tokens", "8");
    assertUsage("--pause", "--scenario", "pause-expert", "--pause", "0");
    assertUsage("--port-base must be 0", "--scenario", "kill-router", "--port-base", "80");
  }

  @Test
  void aMissingModelIsAUsageError() {
    MoeRun r = run("chaos", "--model", tmp.resolve("nothing").toString(), "--scenario", "kill-expert");
    assertEquals(2, r.exitCode());
    assertTrue(r.err().contains("is not a directory"), r.err());
  }
}
