package io.moecluster.deploy.commands;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeFalse;

import io.moecluster.core.checkpoint.CheckpointSpec;
import io.moecluster.core.checkpoint.CheckpointWriter;
import io.moecluster.core.checkpoint.Preset;
import io.moecluster.core.tensor.DType;
import io.moecluster.deploy.MoeRun;
import io.moecluster.expert.cuda.CudaProbe;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/** {@code moe node --backend} and {@code moe bench-expert}: bad values and a missing GPU are clear usage errors. */
@Timeout(60)
class GpuBackendFlagsTest {
  @TempDir Path tmp;


  private static MoeRun run(String... args) {
    return MoeRun.of(args);
  }

  private static void assertUsage(MoeRun r, String expected) {
    assertEquals(2, r.exitCode(), r.err());
    assertTrue(r.err().contains(expected), "stderr: " + r.err());
    assertTrue(r.err().startsWith("moe: "), r.err());
    assertFalse(r.err().contains("\tat "), "no stack trace: " + r.err());
  }

  @Test
  void anUnknownBackendIsAUsageError() {
    assertUsage(run("node", "--roles", "expert", "--seed-nodes", "127.0.0.1:25520", "--model", tmp.toString(),
        "--backend", "gpu"), "--backend must be auto, cpu or cuda, got 'gpu'");
  }

  @Test
  void cudaOnAMachineWithoutAGpuIsAClearStartUpError() {
    assumeFalse(CudaProbe.probe().available(), "this machine has a GPU");
    Path model = tmp.resolve("tiny");
    CheckpointWriter.write(CheckpointSpec.of(Preset.TINY, DType.F32, 1), model);
    MoeRun r = run("node", "--roles", "expert", "--backend", "cuda", "--seed-nodes", "127.0.0.1:1", "--port", "0",
        "--metrics-port", "-1", "--model", model.toString());
    assertUsage(r, "moe.expert.backend = cuda, but no CUDA device can be used");
    assertTrue(r.err().contains("--backend cpu"), r.err());
  }

  @Test
  void benchExpertWithoutAGpuSaysSo() {
    assumeFalse(CudaProbe.probe().available(), "this machine has a GPU");
    assertUsage(run("bench-expert"), "bench-expert needs an NVIDIA GPU");
    assertUsage(run("bench-expert", "--batch", "0"), "--batch");
  }
}
