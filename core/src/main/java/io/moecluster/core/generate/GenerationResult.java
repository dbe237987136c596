package io.moecluster.core.generate;

/**
 * The outcome of one generation, with its timings: prefill covers the prompt up to the first
 * token, decode covers every later token.
 */
public record GenerationResult(
    int[] promptIds,
    int[] generatedIds,
    String text,
    FinishReason finishReason,
    long prefillNanos,
    long decodeNanos) {

  public GenerationResult {
    promptIds = promptIds.clone();
    generatedIds = generatedIds.clone();
  }

  @Override
  public int[] promptIds() {
    return promptIds.clone();
  }

  @Override
  public int[] generatedIds() {
    return generatedIds.clone();
  }

  public double prefillTokensPerSecond() {
    return prefillNanos == 0 ? 0 : promptIds.length * 1e9 / prefillNanos;
  }

  /** Tokens after the first one, over the time they took. */
  public double decodeTokensPerSecond() {
    return generatedIds.length <= 1 || decodeNanos == 0
        ? 0
        : (generatedIds.length - 1) * 1e9 / decodeNanos;
  }
}
