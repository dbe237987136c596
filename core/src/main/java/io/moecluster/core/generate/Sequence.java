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
 *
 * <p>A resumed request ({@link GenerationRequest#resumeIds()}) starts with its delivered tokens
 * replayed through the text decoder and the stop-sequence matcher, with no event, so their state
 * (held-back bytes and text) is the one the uninterrupted run had; its prefill then covers prompt
 * and delivered tokens, and since prefill and decode give the same logits bit for bit and the
 * sampler's draw depends only on (seed, position), the tokens that follow are the uninterrupted
 * run's. When the delivered tokens already end it (EOS, stop sequence, max_tokens), it is finished
 * from the start and emits nothing.
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
    int[] resumed = request.resumeIds();
    int context = cache.maxPositions();
    if (prompt.length >= context) {
      throw new IllegalArgumentException(
          "prompt has " + prompt.length + " tokens; the model's context length is " + context
              + ", so it must be shorter than that");
    }
    if (prompt.length + resumed.length > context) {
      throw new IllegalArgumentException(
          "resume_token_ids: prompt (" + prompt.length + ") and resumed tokens (" + resumed.length
              + ") exceed the model's context length of " + context);
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
    this.tokens = Arrays.copyOf(prompt, prompt.length + Math.min(maxTokens, resumed.length + 256));
    this.length = prompt.length;
    for (int i = 0; i < resumed.length && finish == null; i++) {
      append(resumed[i]);
      text.append(advance(resumed[i], i)); // the client has this text already: no event
    }
    if (finish != null) {
      endNanos = startNanos;
    }
  }

  /**
   * The rows this sequence contributes to the next step: its whole prompt (and resumed tokens)
   * first, then one token.
   */
  public List<StepRow> nextRows() {
    if (isFinished()) {
      return List.of();
    }
    if (cache.length() == 0) {
      List<StepRow> rows = new ArrayList<>(length);
      for (int p = 0; p < length; p++) {
        rows.add(new StepRow(cache, p, tokens[p], p == length - 1));
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
    if (firstTokenNanos == 0) {
      firstTokenNanos = System.nanoTime();
    }
    String delta = advance(token, index);
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

  /**
   * Runs the appended token at completion index {@code index} through the text decoder, the stop
   * matcher and the end checks; returns its text delta and sets {@link #finish} when it ends the
   * sequence.
   */
  private String advance(int token, int index) {
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
    return delta;
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
