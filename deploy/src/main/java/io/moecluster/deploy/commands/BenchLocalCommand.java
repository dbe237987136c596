package io.moecluster.deploy.commands;

import io.moecluster.core.config.ModelConfig;
import io.moecluster.core.generate.GenerationRequest;
import io.moecluster.core.generate.GenerationResult;
import io.moecluster.core.generate.LocalGenerator;
import io.moecluster.core.kernel.MemoryBandwidth;
import io.moecluster.core.model.AttentionWeights;
import io.moecluster.core.model.DenseWeights;
import io.moecluster.core.model.LayerWeights;
import io.moecluster.core.sampling.SamplingParams;
import io.moecluster.core.tensor.Matrix;
import io.moecluster.deploy.cli.ProgressBars;
import java.io.PrintWriter;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * {@code moe bench-local}: single-process prefill and decode speed, set against this machine's
 * measured memory read bandwidth (the decode bound: every active weight byte is read once per
 * token) and FMA peak (the prefill bound).
 */
@Command(name = "bench-local",
    description = "Measure prefill and decode speed in this process against the memory-bandwidth and FMA bounds.")
public final class BenchLocalCommand implements Callable<Integer> {
  @Spec CommandSpec spec;

  @Option(names = "--model", paramLabel = "DIR", required = true, description = "model directory")
  Path model;

  @Mixin ThreadsOption threads;

  @Mixin WeightsOption weights;

  @Option(names = "--prompt-tokens", description = "prompt length (default: ${DEFAULT-VALUE})", defaultValue = "128")
  int promptTokens;

  @Option(names = "--max-tokens", description = "tokens to decode per run (default: ${DEFAULT-VALUE})", defaultValue = "64")
  int maxTokens;

  @Option(names = "--runs", description = "measured runs; medians are reported (default: ${DEFAULT-VALUE})", defaultValue = "5")
  int runs;

  @Override
  public Integer call() {
    if (promptTokens < 1 || maxTokens < 2 || runs < 1) {
      throw new IllegalArgumentException("--prompt-tokens >= 1, --max-tokens >= 2 and --runs >= 1 are required");
    }
    PrintWriter out = spec.commandLine().getOut();
    int usedThreads = threads.threads() == 0 ? Runtime.getRuntime().availableProcessors() : threads.threads();
    try (LocalGenerator generator = LocalGenerator.open(model, usedThreads, weights.placement());
        Arena bandwidthArena = Arena.ofShared()) { // shared: the measuring threads read it
      int context = generator.config().contextLength();
      if ((long) promptTokens + maxTokens > context) { // before the weights are copied or paged in (seconds)
        throw new IllegalArgumentException("--prompt-tokens " + promptTokens + " and --max-tokens " + maxTokens
            + " must fit the model's context length (" + context + ")");
      }
      try (var bar = ProgressBars.bytes("loading weights", generator.checkpointBytes())) {
        generator.warmUp(bar::stepTo);
      }
      ModelConfig c = generator.config();
      long bytesPerToken = activeBytesPerToken(generator.model().dense(), c, generator.model().expertStore()
          .expert(0, 0).byteSize());
      double prefillFlops = prefillFlops(generator.model().dense(), c, promptTokens);

      int[] prompt = randomPrompt(c.vocabSize(), promptTokens);
      GenerationRequest request = new GenerationRequest(prompt, SamplingParams.GREEDY, maxTokens, List.of(), true);
      generator.generate(request, e -> {}); // warm-up run: JIT and caches
      // Bounds and speeds are measured in alternation, so each ratio compares figures taken under
      // the same machine load (the machine may be shared and noisy).
      double[] decode = new double[runs];
      double[] prefill = new double[runs];
      double[] bandwidths = new double[runs];
      double[] peaks = new double[runs];
      double[] decodeRatios = new double[runs];
      double[] prefillRatios = new double[runs];
      // The gaps between a run's tokens, as `moe bench` measures a gateway's streams: the
      // cluster's inter-token latency is set against these.
      BenchStats itl = new BenchStats();
      long[] tokenNanos = new long[maxTokens];
      // One buffer for all the runs: allocating and zeroing 1 GiB again before every run took
      // about a second each and measured nothing.
      MemorySegment bandwidthBuffer = bandwidthArena.allocate(MemoryBandwidth.DEFAULT_BUFFER_BYTES, 4096);
      bandwidthBuffer.fill((byte) 1);
      for (int i = 0; i < runs; i++) {
        bandwidths[i] = MemoryBandwidth.measureReadGBps(bandwidthBuffer, usedThreads, 3);
        peaks[i] = MemoryBandwidth.fmaPeakGflops(usedThreads);
        int[] seen = {0};
        GenerationResult r = generator.generate(request, e -> tokenNanos[seen[0]++] = System.nanoTime());
        for (int t = 1; t < seen[0]; t++) {
          itl.recordNanos(tokenNanos[t] - tokenNanos[t - 1]);
        }
        decode[i] = r.decodeTokensPerSecond();
        prefill[i] = r.prefillTokensPerSecond();
        decodeRatios[i] = decode[i] * bytesPerToken / (bandwidths[i] * 1e9);
        prefillRatios[i] = prefill[i] * prefillFlops / promptTokens / 1e9 / peaks[i];
      }
      double bandwidth = median(bandwidths);
      double fmaPeak = median(peaks);
      double decodeMedian = median(decode);
      double prefillMedian = median(prefill);
      double boundTokens = bandwidth * 1e9 / bytesPerToken;
      double prefillGflops = prefillMedian * prefillFlops / promptTokens / 1e9;
      out.printf(Locale.ROOT, "model            %s (%s, %d layers, %d experts top-%d, hidden %d, ffn %d, %s)%n",
          model, c.family().modelType(), c.numLayers(), c.numExperts(), c.topK(), c.hiddenSize(),
          c.expertIntermediateSize(), c.torchDtype());
      out.printf(Locale.ROOT, "threads          %d%n", usedThreads);
      out.printf(Locale.ROOT, "weights          %s%n", generator.copiedBytes() > 0
          ? String.format(Locale.ROOT, "copied into memory (%.1f MB)", generator.copiedBytes() / 1e6)
          : "read in place from the mapped checkpoint");
      out.printf(Locale.ROOT, "read bandwidth   %.1f GB/s (median over the runs; each a median of 3 passes over 1 GiB)%n", bandwidth);
      out.printf(Locale.ROOT, "FMA peak         %.1f GFLOP/s (median over the runs)%n", fmaPeak);
      out.printf(Locale.ROOT, "active weights   %.1f MB per token%n", bytesPerToken / 1e6);
      out.printf(Locale.ROOT, "decode           %.2f tokens/s (median of %d runs of %d tokens), bound %.2f tokens/s: %.2f of the bound (%s)%n",
          decodeMedian, runs, maxTokens, boundTokens, median(decodeRatios), ratioSpread(decodeRatios));
      out.printf(Locale.ROOT, "decode ITL       p50 %.2f ms, p99 %.2f ms (the gaps between tokens over the runs)%n",
          itl.percentileMillis(50), itl.percentileMillis(99));
      out.printf(Locale.ROOT, "prefill          %.1f tokens/s (prompt %d tokens) = %.1f GFLOP/s: %.2f of the FMA peak (%s)%n",
          prefillMedian, promptTokens, prefillGflops, median(prefillRatios), ratioSpread(prefillRatios));
      out.flush();
    }
    return 0;
  }

  /** Weight bytes a decode token reads: attention, router, top-k experts, shared expert, LM head. */
  static long activeBytesPerToken(DenseWeights w, ModelConfig c, long expertBytes) {
    long total = w.lmHead().byteSize();
    for (LayerWeights l : w.layers()) {
      AttentionWeights a = l.attention();
      total += a.q().byteSize() + a.k().byteSize() + a.v().byteSize() + a.o().byteSize();
      total += l.router().byteSize() + (long) c.topK() * expertBytes;
      if (l.sharedExpert() != null) {
        total += l.sharedExpert().byteSize() + l.sharedExpertGate().byteSize();
      }
    }
    return total;
  }

  /**
   * FLOPs of a prompt's prefill in the matrix products (attention scores excluded): two per
   * multiply-add, every layer's products for every prompt token, and the LM head once, since
   * prefill computes the logits of the last prompt position only.
   */
  static double prefillFlops(DenseWeights w, ModelConfig c, int promptTokens) {
    return 2 * (layerParamsPerToken(w, c) * promptTokens + elements(w.lmHead()));
  }

  /** Multiply-adds per token in the layers' matrix products: attention, router, experts. */
  static double layerParamsPerToken(DenseWeights w, ModelConfig c) {
    double total = 0;
    for (LayerWeights l : w.layers()) {
      AttentionWeights a = l.attention();
      total += elements(a.q()) + elements(a.k()) + elements(a.v()) + elements(a.o()) + elements(l.router());
      total += (double) c.topK() * 3 * c.expertIntermediateSize() * c.hiddenSize();
      if (l.sharedExpert() != null) {
        total += 3.0 * c.sharedExpertIntermediateSize() * c.hiddenSize();
      }
    }
    return total;
  }

  private static double elements(Matrix m) {
    return (double) m.rows() * m.cols();
  }

  private static int[] randomPrompt(int vocab, int length) {
    SplittableRandom random = new SplittableRandom(1234);
    int[] ids = new int[length];
    for (int i = 0; i < length; i++) {
      ids[i] = 3 + random.nextInt(vocab - 3);
    }
    return ids;
  }

  /**
   * How a ratio is summed up: the median of the runs' ratios and, over several runs, their range,
   * which on a shared machine moves with the bandwidth and cores the host grants from run to run.
   */
  static String ratioSpread(double[] ratios) {
    if (ratios.length < 2) {
      return "one run";
    }
    double[] sorted = ratios.clone();
    Arrays.sort(sorted);
    return String.format(Locale.ROOT, "median per-run ratio; runs %.2f-%.2f", sorted[0], sorted[sorted.length - 1]);
  }

  private static double median(double[] values) {
    double[] sorted = values.clone();
    Arrays.sort(sorted);
    int n = sorted.length;
    return n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
  }
}
