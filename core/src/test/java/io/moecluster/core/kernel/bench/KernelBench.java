package io.moecluster.core.kernel.bench;

import io.moecluster.core.kernel.MemoryBandwidth;
import io.moecluster.core.kernel.VectorKernels;

/**
 * Entry point of the kernel benchmarks (JMH, in this package; never run by {@code mvnw verify}).
 *
 * <p>From a clean clone, with {@code JAVA_HOME} on a JDK 25:
 *
 * <pre>{@code
 * # the machine's bounds: median read bandwidth (1 GiB buffer) and FMA peak, on 1 and 2 threads
 * ./mvnw -q -pl core -Pjmh test-compile exec:exec -Djmh.args="bounds 1 2"
 * # decode: matVec GB/s of weights read (the "gbytes" row), F32 and BF16, 1 and 2 threads
 * ./mvnw -q -pl core -Pjmh test-compile exec:exec -Djmh.args="MatVecBench -f 1 -wi 5 -i 3 -r 1s"
 * # prefill: matMul GFLOP/s (the "gflop" row) at n = 16, 64, 256
 * ./mvnw -q -pl core -Pjmh test-compile exec:exec -Djmh.args="MatMulBench -f 1 -wi 5 -i 3 -r 1s"
 * # BF16 widening formulations compared
 * ./mvnw -q -pl core -Pjmh test-compile exec:exec -Djmh.args="Bf16ConvertBench -f 1 -wi 2 -i 3 -r 1s"
 * # a file mapping's read bandwidth against anonymous memory's: threads, rounds, GiB[, file]
 * ./mvnw -q -pl core -Pjmh test-compile exec:exec -Djmh.args="mapped-read 1 9 1"
 * # what the work per loaded cache line costs a stream from memory (1 thread): rounds, GiB
 * ./mvnw -q -pl core -Pjmh test-compile exec:exec -Djmh.args="load-work 9 1"
 * # decode's kernel alone: BF16 matVec passes far past the caches against the bound's read loop,
 * # alternating, on each thread count: rounds, threads...
 * ./mvnw -q -pl core -Pjmh test-compile exec:exec -Djmh.args="decode-passes 9 1 2"
 * # one expert FFN (small preset) on 1 thread as its rows grow, weights from memory: rounds, ms[, rows...]
 * ./mvnw -q -pl core -Pjmh test-compile exec:exec -Djmh.args="expert-rows 5 400"
 * # a layer's 8 small-preset experts of 4 rows (1 thread each unless fused): fused on 2 threads,
 * # as calls on a pool of P threads, as 2 nodes of K threads each; one expert of 1 row on K threads:
 * # rounds, modes...
 * ./mvnw -q -pl core -Pjmh test-compile exec:exec -Djmh.args="expert-layer 5 fused calls-2 nodes-1 one-1 one-2"
 * # BF16 tiles over a 128 MiB matrix, adjacent weight rows against rows apart: rounds, threads
 * ./mvnw -q -pl core -Pjmh test-compile exec:exec -Djmh.args="tile-order 5 1"
 * # one row's attention (head size 64, 4 query heads per KV head) on 1 thread as its context grows,
 * # against the per-position kernel it replaced: rounds, ms[, context lengths...]
 * ./mvnw -q -pl core -Pjmh test-compile exec:exec -Djmh.args="attention 5 300"
 * # what a second memory segment class at the kernels costs (C2 deoptimises them)
 * ./mvnw -q -pl core -Pjmh test-compile exec:exec -Djmh.args="segment-class"
 * # two builds of the kernels side by side in one JVM (see BuildAB): A, B, n, pairs, ms per run
 * ./mvnw -q -pl core -Pjmh test-compile exec:exec -Djmh.args="ab /tmp/core-old.jar $PWD/core/target/classes 1 100 200"
 * }</pre>
 *
 * Five one-second warm-up iterations, not two: C2 needs a few seconds to compile the large
 * register-tiled kernels on a busy 2-core machine, and until it has, the Vector API runs in the
 * interpreter and C1 hundreds of times slower (which shows up as near-zero GB/s).
 *
 * <p>Any other arguments are JMH's own ({@code -h} lists them; {@code -p threads=1} narrows a
 * parameter). The {@code jmh} profile of {@code core/pom.xml} runs this class on the test class
 * path with the Vector API module added.
 */
public final class KernelBench {
  private KernelBench() {}

  public static void main(String[] args) throws Exception {
    if (args.length > 0 && args[0].equals("ab")) {
      BuildAB.main(java.util.Arrays.copyOfRange(args, 1, args.length));
      return;
    }
    if (args.length > 0 && args[0].equals("mapped-read")) {
      MappedReadBandwidth.main(java.util.Arrays.copyOfRange(args, 1, args.length));
      return;
    }
    if (args.length > 0 && args[0].equals("load-work")) {
      LoadWorkCost.main(java.util.Arrays.copyOfRange(args, 1, args.length));
      return;
    }
    if (args.length > 0 && args[0].equals("decode-passes")) {
      DecodePasses.main(java.util.Arrays.copyOfRange(args, 1, args.length));
      return;
    }
    if (args.length > 0 && args[0].equals("expert-rows")) {
      ExpertRows.main(java.util.Arrays.copyOfRange(args, 1, args.length));
      return;
    }
    if (args.length > 0 && args[0].equals("expert-layer")) {
      ExpertLayerCost.main(java.util.Arrays.copyOfRange(args, 1, args.length));
      return;
    }
    if (args.length > 0 && args[0].equals("tile-order")) {
      io.moecluster.core.kernel.TileOrderCost.main(java.util.Arrays.copyOfRange(args, 1, args.length));
      return;
    }
    if (args.length > 0 && args[0].equals("attention")) {
      AttentionCost.main(java.util.Arrays.copyOfRange(args, 1, args.length));
      return;
    }
    if (args.length > 0 && args[0].equals("segment-class")) {
      SegmentClassCost.main(java.util.Arrays.copyOfRange(args, 1, args.length));
      return;
    }
    if (args.length > 0 && args[0].equals("bounds")) {
      System.out.println(VectorKernels.class.getSimpleName() + " species: "
          + jdk.incubator.vector.FloatVector.SPECIES_PREFERRED);
      for (int i = 1; i < Math.max(2, args.length); i++) {
        int threads = args.length > 1 ? Integer.parseInt(args[i]) : Runtime.getRuntime().availableProcessors();
        double gbps = MemoryBandwidth.measureReadGBps(threads);
        double gflops = MemoryBandwidth.fmaPeakGflops(threads);
        System.out.printf("threads %d: read bandwidth %.1f GB/s (median, 1 GiB buffer), FMA peak %.1f GFLOP/s%n",
            threads, gbps, gflops);
      }
      return;
    }
    org.openjdk.jmh.Main.main(args);
  }
}
