package io.moecluster.core.generate;

import io.moecluster.core.sampling.SamplingParams;
import java.util.List;

/**
 * One generation: the prompt as token ids (already tokenized, BOS included where the tokenizer
 * adds it), how to sample, and when to stop.
 */
public record GenerationRequest(
    int[] promptIds,
    SamplingParams sampling,
    int maxTokens,
    List<String> stopSequences,
    boolean ignoreEos) {

  public GenerationRequest {
    promptIds = promptIds.clone();
    stopSequences = List.copyOf(stopSequences);
    if (promptIds.length == 0) {
      throw new IllegalArgumentException("prompt must contain at least one token");
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
