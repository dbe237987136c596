package io.moecluster.core.sampling;

import java.util.Arrays;

/**
 * Picks the next token from a row of logits according to {@link SamplingParams}.
 *
 * <p>Stateless apart from its parameters, so one instance may serve a sequence from any thread.
 * The random draw for a token is a pure function of (seed, position): replaying a sequence on
 * another machine, or after a restart, yields the same tokens given the same logits.
 *
 * <p>The pipeline is repetition penalty, temperature, top-k, softmax, top-p, min-p, renormalize,
 * draw. Candidates are ordered by (probability desc, id asc) wherever order matters, so results do
 * not depend on sort stability.
 */
public final class Sampler {

  private final SamplingParams params;

  public Sampler(SamplingParams params) {
    if (params == null) {
      throw new IllegalArgumentException("sampling params must not be null");
    }
    this.params = params;
  }

  public SamplingParams params() {
    return params;
  }

  /**
   * Picks the next token.
   *
   * @param logits one score per vocabulary entry; not modified
   * @param position index of the token being generated within the whole sequence (prompt length
   *     plus tokens generated so far); selects the random draw
   * @param history the sequence's token ids so far (prompt and generated), for the repetition
   *     penalty; may be null when {@code historyLength} is 0
   * @param historyLength how many leading entries of {@code history} are valid
   * @return the chosen token id, in {@code [0, logits.length)}
   */
  public int sample(float[] logits, int position, int[] history, int historyLength) {
    if (logits.length == 0) {
      throw new IllegalArgumentException("logits must not be empty");
    }
    if (historyLength < 0 || (historyLength > 0 && historyLength > history.length)) {
      throw new IllegalArgumentException(
          "historyLength " + historyLength + " is outside the history array");
    }
    float[] work = copyWithoutNaN(logits);
    if (params.repetitionPenalty() != 1f) {
      applyRepetitionPenalty(work, history, historyLength, params.repetitionPenalty());
    }
    if (params.greedy()) {
      return argmax(work);
    }
    float temperature = params.temperature();
    // An infinite logit (a model's overflow, a repetition penalty near 0) wins outright, and a
    // temperature so small that the largest logit overflows is greedy in the limit. The softmax
    // would otherwise compute inf - inf: every probability NaN, and no nucleus ever complete.
    float max = max(work);
    if (max == Float.POSITIVE_INFINITY || max / temperature == Float.POSITIVE_INFINITY) {
      return argmax(work);
    }
    for (int i = 0; i < work.length; i++) {
      work[i] /= temperature;
    }

    Candidates candidates;
    int topK = params.topK();
    if (topK > 0 && topK < work.length) {
      candidates = Candidates.topK(work, topK);
    } else {
      candidates = Candidates.all(work);
    }
    if (!candidates.softmax()) {
      // Every logit is -inf: there is no distribution to draw from, so fall back to greedy.
      return argmax(work);
    }
    if (params.topP() < 1f) {
      candidates = candidates.nucleus(params.topP());
    }
    if (params.minP() > 0f) {
      candidates.keepAtLeast(params.minP() * candidates.maxProbability());
    }
    return candidates.draw(uniform(params.seed(), position));
  }

  /**
   * The uniform draw in [0, 1) for a sequence with this seed at this position. A SplitMix64-style
   * hash rather than a JDK generator, so the value is fixed by this code alone and not by the JDK
   * version a replica runs.
   */
  static double uniform(long seed, int position) {
    long z = mix64(mix64(seed) + (position + 1L) * GOLDEN_GAMMA);
    return (z >>> 11) * 0x1.0p-53;
  }

  private static final long GOLDEN_GAMMA = 0x9e3779b97f4a7c15L;

  /** The SplitMix64 finalizer (Stafford's variant 13): a bijective, well-avalanched 64-bit mix. */
  static long mix64(long z) {
    z = (z ^ (z >>> 30)) * 0xbf58476d1ce4e5b9L;
    z = (z ^ (z >>> 27)) * 0x94d049bb133111ebL;
    return z ^ (z >>> 31);
  }

  /** A NaN would poison every comparison and the softmax sum; a NaN logit means "never". */
  private static float[] copyWithoutNaN(float[] logits) {
    float[] work = logits.clone();
    for (int i = 0; i < work.length; i++) {
      if (Float.isNaN(work[i])) {
        work[i] = Float.NEGATIVE_INFINITY;
      }
    }
    return work;
  }

  /**
   * CTRL / Hugging Face style: a positive logit is divided by the penalty, a negative one
   * multiplied, so a penalty above 1 always makes a seen token less likely. Each distinct token is
   * penalized once, however often it occurs.
   */
  static void applyRepetitionPenalty(float[] work, int[] history, int historyLength, float penalty) {
    if (historyLength == 0) {
      return;
    }
    int[] seen = Arrays.copyOf(history, historyLength);
    Arrays.sort(seen);
    for (int i = 0; i < seen.length; i++) {
      int token = seen[i];
      if (i > 0 && token == seen[i - 1]) {
        continue;
      }
      if (token < 0 || token >= work.length) {
        throw new IllegalArgumentException(
            "history token id " + token + " is outside the vocabulary of " + work.length);
      }
      float logit = work[token];
      work[token] = logit > 0f ? logit / penalty : logit * penalty;
    }
  }

  /** Index of the largest value; the lowest index wins a tie. */
  private static float max(float[] values) {
    float max = Float.NEGATIVE_INFINITY;
    for (float v : values) {
      max = Math.max(max, v);
    }
    return max;
  }

  static int argmax(float[] values) {
    int best = 0;
    for (int i = 1; i < values.length; i++) {
      if (values[i] > values[best]) {
        best = i;
      }
    }
    return best;
  }

  /**
   * A 64-bit key whose ascending order is (value desc, id asc). Lets a primitive long sort or heap
   * do the deterministic tie-break without boxing or comparators.
   */
  static long descendingKey(float value, int id) {
    int bits = Float.floatToRawIntBits(value + 0f); // + 0f turns -0 into +0 so they tie
    int sortable = bits ^ ((bits >> 31) & 0x7fffffff); // signed-int order equals float order
    return ((long) ~sortable << 32) | id;
  }

  /**
   * The tokens still in the running and their probabilities. {@code ids == null} means every token
   * of the vocabulary in id order, which spares a vocabulary-sized index array on the common path.
   */
  private static final class Candidates {
    private int[] ids;
    private float[] probs;
    private int size;
    /** Whether entries are in (probability desc, id asc) order. */
    private final boolean sorted;

    private Candidates(int[] ids, float[] probs, int size, boolean sorted) {
      this.ids = ids;
      this.probs = probs;
      this.size = size;
      this.sorted = sorted;
    }

    /** Every token; {@code values} is taken over and becomes the probability array. */
    static Candidates all(float[] values) {
      return new Candidates(null, values, values.length, false);
    }

    /** The k highest values, best first, in O(V log k) with a bounded max-heap of keys. */
    static Candidates topK(float[] values, int k) {
      long[] heap = new long[k];
      int size = 0;
      for (int i = 0; i < values.length; i++) {
        long key = descendingKey(values[i], i);
        if (size < k) {
          heap[size] = key;
          siftUp(heap, size++);
        } else if (key < heap[0]) {
          heap[0] = key;
          siftDown(heap, k);
        }
      }
      Arrays.sort(heap);
      int[] ids = new int[k];
      float[] selected = new float[k];
      for (int j = 0; j < k; j++) {
        ids[j] = (int) heap[j];
        selected[j] = values[ids[j]];
      }
      return new Candidates(ids, selected, k, true);
    }

    /**
     * Turns the logits into probabilities in place (float32, shifted by the maximum so exp never
     * overflows). Returns false when all logits are -inf.
     */
    boolean softmax() {
      float max = Float.NEGATIVE_INFINITY;
      for (int i = 0; i < size; i++) {
        max = Math.max(max, probs[i]);
      }
      if (max == Float.NEGATIVE_INFINITY) {
        return false;
      }
      double sum = 0;
      for (int i = 0; i < size; i++) {
        float e = (float) Math.exp(probs[i] - max);
        probs[i] = e;
        sum += e;
      }
      float inv = (float) (1.0 / sum);
      for (int i = 0; i < size; i++) {
        probs[i] *= inv;
      }
      return true;
    }

    float maxProbability() {
      if (sorted) {
        return probs[0];
      }
      float max = 0f;
      for (int i = 0; i < size; i++) {
        max = Math.max(max, probs[i]);
      }
      return max;
    }

    /**
     * Keeps the smallest best-first prefix whose probability reaches {@code topP}, at least one
     * token. When the candidates are not sorted yet, only those above a threshold are sorted: if
     * the tokens at or above t already hold mass {@code >= topP}, the nucleus lies among them.
     * The threshold starts near the top probability and drops until that holds.
     */
    Candidates nucleus(float topP) {
      Candidates sortedCandidates = sorted ? this : sortAbove(topP);
      sortedCandidates.truncateToMass(topP);
      return sortedCandidates;
    }

    private Candidates sortAbove(float topP) {
      float threshold = maxProbability() / 16f;
      while (true) {
        int count = 0;
        double mass = 0;
        for (int i = 0; i < size; i++) {
          if (probs[i] >= threshold) {
            count++;
            mass += probs[i];
          }
        }
        // Terminates: once threshold * size <= 1 - topP the mass outside is below 1 - topP; the
        // final pass at 0 takes everything. In practice the first pass or two suffice.
        if (mass >= topP || threshold == 0f || count == size) {
          // Keyed by index: unsorted candidates are in ascending id order, so index order is id
          // order and the tie-break stays (probability desc, id asc).
          long[] keys = new long[count];
          int n = 0;
          for (int i = 0; i < size; i++) {
            if (probs[i] >= threshold) {
              keys[n++] = descendingKey(probs[i], i);
            }
          }
          Arrays.sort(keys);
          int[] newIds = new int[count];
          float[] newProbs = new float[count];
          for (int j = 0; j < count; j++) {
            int index = (int) keys[j];
            newIds[j] = id(index);
            newProbs[j] = probs[index];
          }
          return new Candidates(newIds, newProbs, count, true);
        }
        threshold = threshold < 1e-30f ? 0f : threshold / 16f;
      }
    }

    private void truncateToMass(float topP) {
      double cumulative = 0;
      for (int i = 0; i < size; i++) {
        cumulative += probs[i];
        if (cumulative >= topP) {
          size = i + 1;
          return;
        }
      }
      // Rounding left the total just under topP: keep everything.
    }

    /** Drops candidates below {@code minProb}, keeping order; the top one always survives. */
    void keepAtLeast(float minProb) {
      int kept = 0;
      for (int i = 0; i < size; i++) {
        if (probs[i] >= minProb) {
          kept++;
        }
      }
      // Counted first so the arrays are as small as the survivors, not the vocabulary.
      int[] newIds = new int[kept];
      float[] newProbs = new float[kept];
      int n = 0;
      for (int i = 0; i < size; i++) {
        if (probs[i] >= minProb) {
          newIds[n] = id(i);
          newProbs[n] = probs[i];
          n++;
        }
      }
      ids = newIds;
      probs = newProbs;
      size = kept;
    }

    /** Renormalizes implicitly (scales u by the kept mass) and walks the cumulative sums. */
    int draw(double u) {
      double total = 0;
      for (int i = 0; i < size; i++) {
        total += probs[i];
      }
      double target = u * total;
      double cumulative = 0;
      int lastPositive = 0;
      for (int i = 0; i < size; i++) {
        if (probs[i] > 0f) {
          cumulative += probs[i];
          lastPositive = i;
          if (target < cumulative) {
            return id(i);
          }
        }
      }
      return id(lastPositive); // u * total rounded up to the total
    }

    private int id(int index) {
      return ids == null ? index : ids[index];
    }

    private static void siftUp(long[] heap, int index) {
      long key = heap[index];
      while (index > 0) {
        int parent = (index - 1) >>> 1;
        if (heap[parent] >= key) {
          break;
        }
        heap[index] = heap[parent];
        index = parent;
      }
      heap[index] = key;
    }

    private static void siftDown(long[] heap, int size) {
      int index = 0;
      long key = heap[0];
      while (true) {
        int child = 2 * index + 1;
        if (child >= size) {
          break;
        }
        if (child + 1 < size && heap[child + 1] > heap[child]) {
          child++;
        }
        if (heap[child] <= key) {
          break;
        }
        heap[index] = heap[child];
        index = child;
      }
      heap[index] = key;
    }
  }
}
