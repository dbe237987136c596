package io.moecluster.core.model;

import io.moecluster.core.config.ModelConfig;
import io.moecluster.core.kernel.Kernels;
import io.moecluster.core.model.prefetch.Prefetcher;
import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;

/**
 * One forward step over a batch of rows from any number of sequences (prefill chunks and decode
 * tokens together), as in HF {@code MixtralForCausalLM.forward}: embed, then per layer attention
 * and the sparse MoE block, then the final norm and the LM head for the rows that want logits.
 * The routed experts run through the {@link ExpertExecutor}, in process or across the cluster.
 * An optional {@link Prefetcher} sends hints for the next layers' experts before each layer's
 * experts are awaited; it never changes a result.
 */
public final class ForwardPass {
  private final ModelConfig c;
  private final Kernels kernels;
  private final DenseWeights weights;
  private final ExpertExecutor experts;
  private final List<DenseLayer> layers;
  private final RotaryEmbedding rope;
  private final Prefetcher prefetcher; // null: no prefetch hints

  public ForwardPass(MoeModel model, ExpertExecutor experts) {
    this(model, experts, null);
  }

  /**
   * @param prefetcher predicts and hints the next layers' experts, or null for none
   */
  public ForwardPass(MoeModel model, ExpertExecutor experts, Prefetcher prefetcher) {
    this.prefetcher = prefetcher;
    this.c = model.config();
    this.kernels = model.kernels();
    this.weights = model.dense();
    this.experts = experts;
    this.rope = new RotaryEmbedding(c.headDim(), c.ropeTheta());
    List<DenseLayer> list = new ArrayList<>();
    for (int l = 0; l < c.numLayers(); l++) {
      list.add(new DenseLayer(c, kernels, weights.layers().get(l), l));
    }
    this.layers = List.copyOf(list);
  }

  public ModelConfig config() {
    return c;
  }

  /**
   * Runs the rows through the model, appending their keys and values to their caches.
   *
   * @return for each row, its next-token logits ({@code [vocab]}) if it asked for them, else null
   */
  public float[][] step(List<StepRow> rows) {
    int n = rows.size();
    if (n == 0) {
      return new float[0][];
    }
    Map<KvCache, Integer> ends = checkPositions(rows);
    int hidden = c.hiddenSize();

    float[] x = new float[n * hidden]; // [rows, hidden] the residual stream
    int half = rope.halfDim();
    float[] cos = new float[n * half]; // [rows, headDim / 2]
    float[] sin = new float[n * half];
    float[] rowCos = new float[half];
    float[] rowSin = new float[half];
    for (int r = 0; r < n; r++) {
      StepRow row = rows.get(r);
      if (row.token() < 0 || row.token() >= c.vocabSize()) {
        throw new IllegalArgumentException(
            "token id " + row.token() + " is outside the vocabulary [0, " + c.vocabSize() + ")");
      }
      Embedding.lookup(weights.embedTokens(), row.token(), x, r * hidden);
      rope.angles(row.position(), rowCos, rowSin);
      System.arraycopy(rowCos, 0, cos, r * half, half);
      System.arraycopy(rowSin, 0, sin, r * half, half);
    }

    Prefetcher.Step prefetch = prefetcher == null ? null : prefetcher.newStep(n);
    for (int l = 0; l < layers.size(); l++) {
      DenseLayer layer = layers.get(l);
      layer.attention(rows, x, cos, sin);
      float[] xb = layer.ffnInput(x, n);
      Routing routing = Gate.route(kernels, c, layer.routerLogits(xb, n), n);
      ExpertBatch batch = ExpertBatch.group(routing, xb, hidden, c.numExperts());
      if (prefetch != null) {
        prefetch.routed(l, routing); // score the guesses made for this layer
        prefetch.hint(l, xb, experts); // gate lookahead: hints for the next layers, before we wait
      }
      if (experts.remote()) {
        kernels.rest();
      }
      float[] moe = batch.combine(experts.run(l, batch.tasks()));
      layer.addSharedExpert(xb, n, moe);
      for (int i = 0; i < x.length; i++) {
        x[i] += moe[i]; // residual connection back into x
      }
    }
    ends.forEach(KvCache::advanceTo);
    return logits(rows, x);
  }

  private float[][] logits(List<StepRow> rows, float[] x) {
    int hidden = c.hiddenSize();
    int wanted = (int) rows.stream().filter(StepRow::wantLogits).count();
    float[][] result = new float[rows.size()][];
    if (wanted == 0) {
      return result;
    }
    float[] xb = new float[wanted * hidden]; // [wanted, hidden]
    int j = 0;
    for (int r = 0; r < rows.size(); r++) {
      if (rows.get(r).wantLogits()) {
        kernels.rmsNorm(xb, j++ * hidden, x, r * hidden, weights.finalNorm(), hidden, c.rmsNormEps());
      }
    }
    int vocab = c.vocabSize();
    float[] all = new float[wanted * vocab]; // [wanted, vocab]
    kernels.matMul(weights.lmHead(), xb, wanted, all);
    j = 0;
    for (int r = 0; r < rows.size(); r++) {
      if (rows.get(r).wantLogits()) {
        result[r] = java.util.Arrays.copyOfRange(all, j * vocab, (j + 1) * vocab);
        j++;
      }
    }
    return result;
  }

  /** Each sequence's rows must continue its cache with consecutive positions. */
  private static Map<KvCache, Integer> checkPositions(List<StepRow> rows) {
    Map<KvCache, Integer> next = new IdentityHashMap<>();
    for (StepRow row : rows) {
      int expected = next.getOrDefault(row.cache(), row.cache().length());
      if (row.position() != expected) {
        throw new IllegalArgumentException(
            "row at position " + row.position() + " does not continue its sequence (expected " + expected + ")");
      }
      next.put(row.cache(), expected + 1);
    }
    next.forEach((cache, end) -> cache.ensureCapacity(end));
    return next;
  }
}
