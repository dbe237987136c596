package io.moecluster.core.sampling;

/**
 * How the next token is drawn from the logits. {@code temperature == 0} is greedy (argmax, lowest
 * id on ties). Filters apply in the order repetition penalty, temperature, top-k, top-p, min-p.
 *
 * @param topK keep the k most likely tokens; 0 disables
 * @param topP keep the smallest set whose probability reaches p; 1 disables
 * @param minP drop tokens whose probability is below minP times the top one; 0 disables
 * @param repetitionPenalty CTRL-style penalty on tokens already in the sequence; 1 disables
 * @param seed the random stream of a sequence is a pure function of (seed, position)
 */
public record SamplingParams(
    float temperature, int topK, float topP, float minP, float repetitionPenalty, long seed) {

  public static final SamplingParams GREEDY = new SamplingParams(0f, 0, 1f, 0f, 1f, 0L);

  public SamplingParams {
    if (!(temperature >= 0f) || !Float.isFinite(temperature)) {
      throw new IllegalArgumentException("temperature must be a finite number >= 0, got " + temperature);
    }
    if (topK < 0) {
      throw new IllegalArgumentException("top_k must be >= 0 (0 disables it), got " + topK);
    }
    if (!(topP > 0f && topP <= 1f)) {
      throw new IllegalArgumentException("top_p must be in (0, 1], got " + topP);
    }
    if (!(minP >= 0f && minP <= 1f)) {
      throw new IllegalArgumentException("min_p must be in [0, 1], got " + minP);
    }
    if (!(repetitionPenalty > 0f) || !Float.isFinite(repetitionPenalty)) {
      throw new IllegalArgumentException(
          "repetition_penalty must be a finite number > 0, got " + repetitionPenalty);
    }
  }

  public boolean greedy() {
    return temperature == 0f;
  }
}
