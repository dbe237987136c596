package io.moecluster.core.generate;

import io.moecluster.core.model.KvCache;
import io.moecluster.core.model.StepRow;
import io.moecluster.core.sampling.Sampler;
import io.moecluster.core.sampling.StopSequenceMatcher;
import io.moecluster.core.tokenizer.StreamingDecoder;
import io.moecluster.core.tokenizer.Tokenizer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Set;
import java.util.function.Consumer;

/**
 * One request's state while it generates: its tokens, KV cache, sampler and text decoders, and
 * how it ends. It turns each sampled token into a {@link TokenEvent} for its listener. Owned by
 * one stepping thread; not thread-safe.
 */
public final class Sequence {
  private final GenerationRequest request;
  private final KvCache cache;
  private final Sampler sampler;
  private final Set<Integer> eosIds;
  private final StreamingDecoder decoder;
  private final StopSequenceMatcher stops;
  private final Consumer<TokenEvent> listener;
  private final int promptLength;
  private final int maxTokens;
  private final int tokenizerVocab;
  private final StringBuilder text = new StringBuilder();
  private int[] tokens; // prompt then generated ids
  private int length;
  private FinishReason finish;
  private final long startNanos = System.nanoTime();
  private long firstTokenNanos;
  private long endNanos;

  public Sequence(
      GenerationRequest request, KvCache cache, Tokenizer tokenizer, Set<Integer> eosIds,
      Consumer<TokenEvent> listener) {
    int[] prompt = request.promptIds();
    int context = cache.maxPositions();
    if (prompt.length >= context) {
      throw new IllegalArgumentException(
          "prompt has " + prompt.length + " tokens; the model's context length is " + context
              + ", so it must be shorter than that");
    }
    this.request = request;
    this.cache = cache;
    this.sampler = new Sampler(request.sampling());
    this.eosIds = eosIds;
    this.decoder = tokenizer.streamingDecoder(true);
    this.stops = new StopSequenceMatcher(request.stopSequences());
    this.listener = listener;
    this.promptLength = prompt.length;
    this.tokenizerVocab = tokenizer.vocabSize();
    this.maxTokens = Math.min(request.maxTokens(), context - prompt.length);
    this.tokens = Arrays.copyOf(prompt, prompt.length + Math.min(maxTokens, 256));
    this.length = prompt.length;
  }

  /** The rows this sequence contributes to the next step: its whole prompt first, then one token. */
  public List<StepRow> nextRows() {
    if (isFinished()) {
      return List.of();
    }
    if (cache.length() == 0) {
      List<StepRow> rows = new ArrayList<>(promptLength);
      for (int p = 0; p < promptLength; p++) {
        rows.add(new StepRow(cache, p, tokens[p], p == promptLength - 1));
      }
      return rows;
    }
    return List.of(new StepRow(cache, length - 1, tokens[length - 1], true));
  }

  /** Samples the next token from the step's logits and reports it. */
  public void accept(float[] logits) {
    int position = length;
    int token = sampler.sample(logits, position, tokens, length);
    append(token);
    int index = length - promptLength - 1;
    if (index == 0) {
      firstTokenNanos = System.nanoTime();
    }
    String delta;
    if (eosIds.contains(token) && !request.ignoreEos()) {
      finish = FinishReason.EOS;
      StopSequenceMatcher.Result tail = stops.feed(decoder.flush());
      delta = tail.text() + (tail.stopped() ? "" : stops.flush());
    } else {
      // Checkpoints pad vocab_size past the tokenizer (OLMoE, Qwen); such ids have no text, as in HF.
      String text = token < tokenizerVocab ? decoder.push(token) : "";
      StopSequenceMatcher.Result fed = stops.feed(text);
      delta = fed.text();
      if (fed.stopped()) {
        finish = FinishReason.STOP_SEQUENCE;
      } else if (index + 1 >= maxTokens) {
        finish = FinishReason.LENGTH;
        StopSequenceMatcher.Result tail = stops.feed(decoder.flush());
        delta = delta + tail.text() + (tail.stopped() ? "" : stops.flush());
        if (tail.stopped()) {
          finish = FinishReason.STOP_SEQUENCE;
        }
      }
    }
    text.append(delta);
    if (finish != null) {
      endNanos = System.nanoTime();
    }
    if (request.logprobs() > 0) {
      Logprobs lp = new Logprobs(logits);
      listener.accept(new TokenEvent(index, token, delta, lp.of(token), lp.top(request.logprobs())));
    } else {
      listener.accept(new TokenEvent(index, token, delta));
    }
  }

  /** Ends the sequence early (client gone). */
  public void cancel() {
    if (finish == null) {
      finish = FinishReason.CANCELLED;
      endNanos = System.nanoTime();
    }
  }

  private void append(int token) {
    if (length == tokens.length) {
      tokens = Arrays.copyOf(tokens, Math.min(promptLength + maxTokens, tokens.length * 2));
    }
    tokens[length++] = token;
  }

  public boolean isFinished() {
    return finish != null;
  }

  public GenerationRequest request() {
    return request;
  }

  public KvCache cache() {
    return cache;
  }

  public GenerationResult result() {
    if (finish == null) {
      throw new IllegalStateException("sequence still running");
    }
    long prefill = (firstTokenNanos == 0 ? endNanos : firstTokenNanos) - startNanos;
    long decode = firstTokenNanos == 0 ? 0 : endNanos - firstTokenNanos;
    return new GenerationResult(
        Arrays.copyOf(tokens, promptLength),
        Arrays.copyOfRange(tokens, promptLength, length),
        text.toString(),
        finish,
        prefill,
        decode);
  }
}
