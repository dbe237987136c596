package io.moecluster.core.generate;

import java.util.List;

/**
 * One generated token as it is streamed: its id, the text it completes (may be empty while a
 * multi-byte character or a possible stop sequence is held back), and its position in the output.
 * When the request asked for log-probabilities: the token's log-probability under the model
 * (log-softmax of the raw logits, before sampling filters, as OpenAI and vLLM report it) and the
 * most likely alternatives; otherwise {@code logprob} is NaN and {@code topLogprobs} empty.
 */
public record TokenEvent(
    int index, int tokenId, String textDelta, float logprob, List<TokenLogprob> topLogprobs) {

  public TokenEvent {
    topLogprobs = List.copyOf(topLogprobs);
  }

  public TokenEvent(int index, int tokenId, String textDelta) {
    this(index, tokenId, textDelta, Float.NaN, List.of());
  }

  public boolean hasLogprob() {
    return !Float.isNaN(logprob);
  }
}
