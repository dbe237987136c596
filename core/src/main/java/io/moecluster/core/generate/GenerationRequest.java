package io.moecluster.core.generate;

import io.moecluster.core.sampling.SamplingParams;
import java.util.List;

/**
 * One generation: the prompt as token ids (already tokenized, BOS included where the tokenizer
 * adds it), how to sample, when to stop, and how many alternatives' log-probabilities to report
 * per token (0: none, not even the chosen token's).
 */
public record GenerationRequest(
    int[] promptIds,
    SamplingParams sampling,
    int maxTokens,
    List<String> stopSequences,
    boolean ignoreEos,
    int logprobs) {

  /** Maximum alternatives per token a request may ask for. */
  public static final int MAX_LOGPROBS = 20;

  public GenerationRequest(
      int[] promptIds, SamplingParams sampling, int maxTokens, List<String> stopSequences, boolean ignoreEos) {
    this(promptIds, sampling, maxTokens, stopSequences, ignoreEos, 0);
  }

  public GenerationRequest {
    promptIds = promptIds.clone();
    stopSequences = List.copyOf(stopSequences);
    if (promptIds.length == 0) {
      throw new IllegalArgumentException("prompt must contain at least one token");
    }
    if (logprobs < 0 || logprobs > MAX_LOGPROBS) {
      throw new IllegalArgumentException("logprobs must be in [0, " + MAX_LOGPROBS + "], got " + logprobs);
    }
    if (maxTokens < 1) {
      throw new IllegalArgumentException("max_tokens must be >= 1, got " + maxTokens);
    }
  }

  @Override
  public int[] promptIds() {
    return promptIds.clone();
  }
}
