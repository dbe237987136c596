package io.moecluster.core.model.prefetch;

import io.moecluster.core.config.ModelConfig;
import io.moecluster.core.kernel.Kernels;
import io.moecluster.core.model.DenseWeights;
import io.moecluster.core.model.ExpertExecutor;
import io.moecluster.core.model.Gate;
import io.moecluster.core.model.MoeModel;
import io.moecluster.core.model.Routing;
import io.moecluster.core.tensor.Matrix;
import java.util.BitSet;
import java.util.List;
import java.util.concurrent.atomic.AtomicLongArray;

/**
 * Speculative expert prefetching by gate lookahead: at layer L the forward pass hands over the
 * post-attention normalized rows {@code xb} (the gate of L's input); the prefetcher applies the
 * gates of layers L+1..L+depth to those same rows, takes each row's predicted top-k and sends the
 * distinct predicted experts to {@link ExpertExecutor#prefetch} before layer L's experts are
 * awaited. The hidden state changes little from one layer to the next, so the next gates mostly
 * choose what they would choose on the real input. With {@code extraExperts > 0} each row also
 * hints the experts ranked just below its predicted top-k, which catches near-ties that the real
 * input flips, at the price of more hints. Hints never change a result. A layer for which the
 * executor says no hint could help ({@link ExpertExecutor#wantsHints}: all its experts stay warm
 * where they run) is not predicted at all, and so not scored either.
 *
 * <p>It also checks its guesses: when a predicted layer is routed for real, the share of its real
 * top-k choices that were predicted goes to the {@link PrefetchListener} and into running totals
 * ({@link #accuracy}). One {@link Step} per forward step holds that step's predictions, so one
 * prefetcher may serve several forward passes on different threads.
 */
public final class Prefetcher {
  private final ModelConfig config;
  private final Kernels kernels;
  private final List<Matrix> gates; // per layer: the router, [experts, hidden]
  private final int depth;
  private final int extraExperts;
  private final PrefetchListener listener;
  private final AtomicLongArray routed; // [layers] real top-k choices of predicted layers (depth 1..d summed)
  private final AtomicLongArray predicted; // [layers] of those, the predicted ones
  private final AtomicLongArray hints; // [layers] experts hinted for the layer
  private final AtomicLongArray skipped; // [layers] predictions of the layer skipped (no hint could help)

  /**
   * @param depth how many layers ahead to predict (>= 1)
   */
  public Prefetcher(MoeModel model, int depth, PrefetchListener listener) {
    this(model.config(), model.kernels(), model.dense(), depth, 0, listener);
  }

  /**
   * @param depth how many layers ahead to predict (>= 1)
   * @param extraExperts experts hinted per row beyond the predicted top-k, by gate score (>= 0)
   */
  public Prefetcher(MoeModel model, int depth, int extraExperts, PrefetchListener listener) {
    this(model.config(), model.kernels(), model.dense(), depth, extraExperts, listener);
  }

  public Prefetcher(ModelConfig config, Kernels kernels, DenseWeights weights, int depth, int extraExperts,
      PrefetchListener listener) {
    if (depth < 1) {
      throw new IllegalArgumentException("prefetch depth must be >= 1, got " + depth);
    }
    if (extraExperts < 0) {
      throw new IllegalArgumentException("prefetch extra experts must be >= 0, got " + extraExperts);
    }
    this.extraExperts = extraExperts;
    this.config = config;
    this.kernels = kernels;
    this.gates = weights.layers().stream().map(l -> l.router()).toList();
    this.depth = depth;
    this.listener = listener == null ? PrefetchListener.NONE : listener;
    int layers = config.numLayers();
    this.routed = new AtomicLongArray(layers);
    this.predicted = new AtomicLongArray(layers);
    this.hints = new AtomicLongArray(layers);
    this.skipped = new AtomicLongArray(layers);
  }

  public int depth() {
    return depth;
  }

  /** Predictions of {@code layer} skipped so far because no hint for it could help. */
  public long predictionsSkipped(int layer) {
    return skipped.get(layer);
  }

  /** The state of one forward step over {@code rows} rows. */
  public Step newStep(int rows) {
    return new Step(rows);
  }

  /**
   * Share of the real top-k choices of {@code layer} that had been predicted, over every step so
   * far (all depths together); NaN before the layer was ever predicted and routed.
   */
  public double accuracy(int layer) {
    long r = routed.get(layer);
    return r == 0 ? Double.NaN : (double) predicted.get(layer) / r;
  }

  /** Experts hinted for {@code layer} so far (summed over steps and depths). */
  public long hintsIssued(int layer) {
    return hints.get(layer);
  }

  /** One forward step's predictions; used by one thread. */
  public final class Step {
    private final int rows;
    private final Routing[][] predictions; // [target layer][depth - 1]

    private Step(int rows) {
      this.rows = rows;
      this.predictions = new Routing[config.numLayers()][depth];
    }

    /**
     * At {@code layer}, before its experts are awaited: predicts layers layer+1..layer+depth from
     * {@code xb} and sends the hints.
     *
     * @param xb the post-attention normalized rows of {@code layer}, {@code [rows, hidden]}
     */
    public void hint(int layer, float[] xb, ExpertExecutor experts) {
      int last = Math.min(config.numLayers() - 1, layer + depth);
      for (int target = layer + 1; target <= last; target++) {
        if (!experts.wantsHints(target)) {
          skipped.incrementAndGet(target);
          listener.onSkipped(layer, target);
          continue; // nothing a hint could warm: not worth the gate product either
        }
        float[] logits = new float[rows * config.numExperts()]; // [rows, experts]
        kernels.matMul(gates.get(target), xb, rows, logits);
        Routing guess = Gate.route(kernels, config, logits, rows);
        predictions[target][target - layer - 1] = guess;
        int[] chosen = extraExperts == 0 ? distinct(guess) : topByScore(logits, rows, guess.topK() + extraExperts);
        hints.addAndGet(target, chosen.length);
        experts.prefetch(target, chosen);
        listener.onHints(layer, target, chosen);
      }
    }

    /** {@code layer} was routed for real: scores the predictions made for it. */
    public void routed(int layer, Routing real) {
      for (int d = 1; d <= depth; d++) {
        Routing guess = predictions[layer][d - 1];
        if (guess == null) {
          continue;
        }
        predictions[layer][d - 1] = null;
        PredictionAccuracy acc = score(layer, d, guess, real);
        routed.addAndGet(layer, acc.routed());
        predicted.addAndGet(layer, acc.predicted());
        listener.onAccuracy(acc);
      }
    }
  }

  /** Compares a predicted routing with the real one, per row and per distinct expert. */
  static PredictionAccuracy score(int layer, int depth, Routing guess, Routing real) {
    int k = real.topK();
    int hits = 0;
    BitSet realSet = new BitSet();
    BitSet guessSet = new BitSet();
    for (int r = 0; r < real.rows(); r++) {
      for (int s = 0; s < k; s++) {
        int e = real.expert(r, s);
        realSet.set(e);
        guessSet.set(guess.expert(r, s));
        for (int g = 0; g < guess.topK(); g++) {
          if (guess.expert(r, g) == e) {
            hits++;
            break;
          }
        }
      }
    }
    BitSet both = (BitSet) realSet.clone();
    both.and(guessSet);
    return new PredictionAccuracy(
        layer, depth, real.rows() * k, hits, realSet.cardinality(), guessSet.cardinality(), both.cardinality());
  }

  /** The distinct experts among each row's {@code n} highest logits, ascending. */
  static int[] topByScore(float[] logits, int rows, int n) {
    int experts = logits.length / rows;
    int take = Math.min(n, experts);
    BitSet set = new BitSet();
    BitSet row = new BitSet();
    for (int r = 0; r < rows; r++) {
      row.clear();
      for (int t = 0; t < take; t++) {
        int best = -1;
        for (int e = 0; e < experts; e++) {
          if (!row.get(e) && (best < 0 || logits[r * experts + e] > logits[r * experts + best])) {
            best = e;
          }
        }
        row.set(best);
      }
      set.or(row);
    }
    return set.stream().toArray();
  }

  /** The distinct experts of a routing, ascending. */
  static int[] distinct(Routing routing) {
    BitSet set = new BitSet();
    for (int e : routing.experts()) {
      set.set(e);
    }
    return set.stream().toArray();
  }
}
