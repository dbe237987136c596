package io.moecluster.core.generate;

import io.moecluster.core.sampling.SamplingParams;
import java.util.List;

/**
 * One generation: the prompt as token ids (already tokenized, BOS included where the tokenizer
 * adds it), how to sample, when to stop, and how many alternatives' log-probabilities to report
 * per token (0: none, not even the chosen token's).
 *
 * <p>{@code resumeIds} makes it a resumed generation: the first tokens of the completion, already
 * delivered by an earlier run that broke off. The generation continues right after them exactly
 * as the uninterrupted run would have (same tokens, same text deltas, indices from {@code
 * resumeIds.length}); they count against {@code maxTokens}.
 */
public record GenerationRequest(
    int[] promptIds,
    SamplingParams sampling,
    int maxTokens,
    List<String> stopSequences,
    boolean ignoreEos,
    int logprobs,
    int[] resumeIds) {

  /** Maximum alternatives per token a request may ask for. */
  public static final int MAX_LOGPROBS = 20;

  public GenerationRequest(
      int[] promptIds, SamplingParams sampling, int maxTokens, List<String> stopSequences, boolean ignoreEos) {
    this(promptIds, sampling, maxTokens, stopSequences, ignoreEos, 0);
  }

  public GenerationRequest(
      int[] promptIds, SamplingParams sampling, int maxTokens, List<String> stopSequences, boolean ignoreEos,
      int logprobs) {
    this(promptIds, sampling, maxTokens, stopSequences, ignoreEos, logprobs, new int[0]);
  }

  /** The same request resumed after {@code delivered}, the completion's first tokens. */
  public GenerationRequest resumedAfter(int[] delivered) {
    return new GenerationRequest(promptIds, sampling, maxTokens, stopSequences, ignoreEos, logprobs, delivered);
  }

  public GenerationRequest {
    promptIds = promptIds.clone();
    resumeIds = resumeIds == null ? new int[0] : resumeIds.clone();
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
    if (resumeIds.length > maxTokens) {
      throw new IllegalArgumentException(
          "resume_token_ids: " + resumeIds.length + " ids, more than max_tokens (" + maxTokens + ")");
    }
  }

  @Override
  public int[] promptIds() {
    return promptIds.clone();
  }

  @Override
  public int[] resumeIds() {
    return resumeIds.clone();
  }
}
