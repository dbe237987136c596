package io.moecluster.core.generate;

import java.util.ArrayList;
import java.util.List;

/** Log-softmax of a logits row, for the tokens a client asks about. */
final class Logprobs {
  private final float[] logits;
  private final double logSumExp;

  Logprobs(float[] logits) {
    this.logits = logits;
    float max = Float.NEGATIVE_INFINITY;
    for (float v : logits) {
      max = Math.max(max, v);
    }
    double sum = 0;
    for (float v : logits) {
      sum += Math.exp(v - max);
    }
    this.logSumExp = max + Math.log(sum);
  }

  float of(int token) {
    return (float) (logits[token] - logSumExp);
  }

  /** The {@code n} most likely tokens, by descending probability then ascending id. */
  List<TokenLogprob> top(int n) {
    int k = Math.min(n, logits.length);
    int[] best = new int[k];
    int size = 0;
    for (int id = 0; id < logits.length; id++) {
      if (size < k) {
        best[size++] = id;
      } else if (logits[id] > logits[best[k - 1]]) {
        best[k - 1] = id;
      } else {
        continue;
      }
      for (int i = size - 1; i > 0 && logits[best[i]] > logits[best[i - 1]]; i--) { // keep sorted
        int t = best[i];
        best[i] = best[i - 1];
        best[i - 1] = t;
      }
    }
    List<TokenLogprob> out = new ArrayList<>(size);
    for (int i = 0; i < size; i++) {
      out.add(new TokenLogprob(best[i], of(best[i])));
    }
    return out;
  }
}
