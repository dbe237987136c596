package io.moecluster.expert.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The committed PTX (what the backend loads) is sound without a GPU: it declares the ISA and
 * target the driver-compatibility promise rests on, holds every kernel the host code launches,
 * and assembles with {@code ptxas} (where the CUDA toolkit is installed) for the GPUs we target;
 * where {@code nvcc} is installed, it is what the {@code .cu} source compiles to.
 */
class PtxAssemblesTest {
  private static final Path CU = Path.of("src/main/cuda/expert_ffn.cu");
  private static final Path BUILD = Path.of("src/main/cuda/build-ptx.sh");

  private static String ptx() {
    return new String(CudaDevice.loadPtx(), 0, CudaDevice.loadPtx().length - 1, StandardCharsets.US_ASCII);
  }

  @Test
  void declaresIsa80ForComputeCapability80AndHoldsEveryKernel() {
    String ptx = ptx();
    assertTrue(ptx.lines().anyMatch(l -> l.equals(".version 8.0")), "PTX ISA 8.0: drivers for CUDA 12.0 and newer");
    assertTrue(ptx.lines().anyMatch(l -> l.equals(".target sm_80")), "compute_80: A100 and newer");
    for (String kernel : LaunchPlan.kernelNames()) {
      assertTrue(ptx.contains(".entry " + kernel + "("), "kernel " + kernel + " is missing from the PTX");
    }
  }

  @Test
  void assemblesWithPtxas(@TempDir Path dir) throws Exception {
    Optional<Path> ptxas = tool("ptxas");
    assumeTrue(ptxas.isPresent(), "ptxas is not installed (CUDA toolkit); skipping the PTX assembly check");
    Path file = dir.resolve("expert_ffn.ptx");
    Files.writeString(file, ptx());
    for (String arch : new String[] {"sm_80", "sm_90"}) {
      Result r = run(List.of(ptxas.get().toString(), "-arch=" + arch, "-o", dir.resolve(arch + ".cubin").toString(),
          file.toString()));
      assertEquals(0, r.code, "ptxas -arch=" + arch + " failed:\n" + r.output);
      assertTrue(Files.size(dir.resolve(arch + ".cubin")) > 0);
    }
  }

  @Test
  void isWhatTheSourceCompilesTo(@TempDir Path dir) throws Exception {
    assumeTrue(tool("nvcc").isPresent(), "nvcc is not installed; skipping the PTX freshness check");
    // build-ptx.sh writes next to itself: run a copy of src/main/cuda in a scratch tree.
    Path cuda = Files.createDirectories(dir.resolve("src/main/cuda"));
    Files.copy(CU, cuda.resolve("expert_ffn.cu"));
    Files.copy(BUILD, cuda.resolve("build-ptx.sh"));
    Files.createDirectories(dir.resolve("src/main/resources/io/moecluster/expert/cuda"));
    Result r = run(List.of("bash", cuda.resolve("build-ptx.sh").toString()));
    assertEquals(0, r.code, r.output);
    String fresh = Files.readString(dir.resolve("src/main/resources/io/moecluster/expert/cuda/expert_ffn.ptx"));
    assertEquals(code(fresh), code(ptx()),
        "the committed PTX is stale: run ./mvnw -B -pl expert-node -am -Pnvcc generate-resources and commit it");
  }

  /** The PTX without its comment lines (they name the compiler build). */
  private static String code(String ptx) {
    return ptx.lines().filter(l -> !l.startsWith("//")).collect(Collectors.joining("\n"));
  }

  private static Optional<Path> tool(String name) {
    List<String> dirs = new ArrayList<>(List.of(System.getenv().getOrDefault("PATH", "").split(File.pathSeparator)));
    dirs.add("/usr/local/cuda/bin");
    for (String d : dirs) {
      Path p = Path.of(d.isEmpty() ? "." : d, name);
      if (Files.isExecutable(p)) {
        return Optional.of(p);
      }
    }
    return Optional.empty();
  }

  private record Result(int code, String output) {}

  private static Result run(List<String> command) throws IOException, InterruptedException {
    Process p = new ProcessBuilder(command).redirectErrorStream(true).start();
    try {
      String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
      assertTrue(p.waitFor(120, TimeUnit.SECONDS), "timed out: " + command);
      return new Result(p.exitValue(), out);
    } finally {
      p.destroyForcibly();
    }
  }
}
