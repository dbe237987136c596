package io.moecluster.gateway;

import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.moecluster.core.config.ModelConfig;
import io.moecluster.core.sampling.SamplingParams;
import io.moecluster.core.tokenizer.ChatMessage;
import io.moecluster.core.tokenizer.ChatTemplate;
import io.moecluster.core.tokenizer.Tokenizer;
import io.moecluster.core.tokenizer.TokenizerException;
import io.moecluster.proto.cluster.v1.SamplingSpec;
import io.moecluster.proto.v1.GenerateRequest;
import java.security.SecureRandom;
import java.util.List;

/**
 * Checks a {@link GenerateRequest} against the served model and the gateway's limits, and turns it
 * into a {@link ValidRequest}: prompt token ids (template and special tokens applied), sampling
 * with every default resolved, max_tokens resolved and capped by the context. Every bad field is an
 * {@code INVALID_ARGUMENT} whose description starts with the field's name; an unknown model is
 * {@code INVALID_ARGUMENT} naming the field.
 */
public final class RequestValidator {
  /** Highest temperature accepted; above it sampling is indistinguishable from uniform. */
  static final float MAX_TEMPERATURE = 100f;

  private final Tokenizer tokenizer;
  private final ModelConfig config;
  private final GatewaySettings settings;
  private final String modelName;
  private final SecureRandom seeds = new SecureRandom();

  public RequestValidator(
      Tokenizer tokenizer, ModelConfig config, GatewaySettings settings, String modelName) {
    this.tokenizer = tokenizer;
    this.config = config;
    this.settings = settings;
    this.modelName = modelName;
  }

  /** A request that passed every check, ready to become a router Submit. */
  public record ValidRequest(
      int[] promptIds,
      SamplingSpec sampling,
      int maxTokens,
      List<String> stop,
      boolean ignoreEos,
      int logprobs,
      String clientRequestId,
      int[] resumeIds) {

    /** A request that does not resume anything. */
    public ValidRequest(
        int[] promptIds,
        SamplingSpec sampling,
        int maxTokens,
        List<String> stop,
        boolean ignoreEos,
        int logprobs,
        String clientRequestId) {
      this(promptIds, sampling, maxTokens, stop, ignoreEos, logprobs, clientRequestId, new int[0]);
    }
  }

  /** Checks the model name (empty = the served one); {@code INVALID_ARGUMENT} otherwise. */
  public void checkModel(String requested) {
    if (!requested.isEmpty() && !requested.equals(modelName)) {
      throw new StatusRuntimeException(
          Status.INVALID_ARGUMENT.withDescription(
              "model: '"
                  + requested
                  + "' is not served here; the served model is '"
                  + modelName
                  + "' (or leave the field empty)"));
    }
  }

  public ValidRequest validate(GenerateRequest r) {
    checkModel(r.getModel());
    int[] prompt = promptIds(r);
    int context = config.contextLength();
    if (prompt.length >= context) {
      throw invalid(
          "prompt: "
              + prompt.length
              + " tokens, the context is "
              + context
              + " (a prompt may have at most "
              + (context - 1)
              + " tokens to leave room for one generated token)");
    }
    int maxTokens = r.getMaxTokens() == 0 ? settings.defaultMaxTokens() : r.getMaxTokens();
    if (Integer.toUnsignedLong(r.getMaxTokens()) > settings.maxMaxTokens()) {
      throw invalid(
          "max_tokens: "
              + Integer.toUnsignedString(r.getMaxTokens())
              + " is over the limit of "
              + settings.maxMaxTokens());
    }
    // Generation stops when the context is full: cap instead of refusing.
    maxTokens = Math.min(maxTokens, context - prompt.length);
    if (Integer.toUnsignedLong(r.getLogprobs()) > settings.maxLogprobs()) {
      throw invalid(
          "logprobs: "
              + Integer.toUnsignedString(r.getLogprobs())
              + " is over the limit of "
              + settings.maxLogprobs());
    }
    checkStop(r.getStopList());
    int[] resumeIds = resumeIds(r, maxTokens);
    return new ValidRequest(
        prompt,
        sampling(r),
        maxTokens,
        List.copyOf(r.getStopList()),
        r.getIgnoreEos(),
        r.getLogprobs(),
        r.getRequestId(),
        resumeIds);
  }

  /**
   * Stop sequences: non-empty and within the configured count and length, since each one rides in
   * the router's Submit (one Artery frame) and is matched after every generated token.
   */
  private void checkStop(List<String> stop) {
    if (stop.size() > settings.maxStopSequences()) {
      throw invalid(
          "stop: "
              + stop.size()
              + " stop sequences, the limit is "
              + settings.maxStopSequences());
    }
    for (int i = 0; i < stop.size(); i++) {
      String s = stop.get(i);
      if (s.isEmpty()) {
        throw invalid("stop: stop sequence " + i + " is empty");
      }
      if (s.length() > settings.maxStopSequenceChars()) {
        throw invalid(
            "stop: stop sequence "
                + i
                + " has "
                + s.length()
                + " characters, the limit is "
                + settings.maxStopSequenceChars());
      }
    }
  }

  /**
   * The completion's tokens the client already has: valid ids, no more than the (capped)
   * max_tokens, so prompt and resumed tokens always fit in the context.
   */
  private int[] resumeIds(GenerateRequest r, int maxTokens) {
    int count = r.getResumeTokenIdsCount();
    if (count > maxTokens) {
      throw invalid(
          "resume_token_ids: "
              + count
              + " ids, more than the "
              + maxTokens
              + " tokens this request may generate (max_tokens, capped by the context); send the"
              + " same request as the stream being resumed");
    }
    return vocabularyIds("resume_token_ids", r.getResumeTokenIdsList());
  }

  /** The ids as an array, each checked against the vocabulary; {@code field} names them in errors. */
  private int[] vocabularyIds(String field, List<Integer> ids) {
    int vocab = config.vocabSize();
    int[] out = new int[ids.size()];
    for (int i = 0; i < out.length; i++) {
      int id = ids.get(i);
      if (id < 0 || id >= vocab) {
        throw invalid(
            field
                + ": id "
                + id
                + " at position "
                + i
                + " is outside the vocabulary [0, "
                + vocab
                + ")");
      }
      out[i] = id;
    }
    return out;
  }

  private int[] promptIds(GenerateRequest r) {
    switch (r.getPromptCase()) {
      case TEXT -> {
        String text = r.getText();
        if (text.isEmpty()) {
          throw invalid("prompt: the text is empty");
        }
        checkTextLength("prompt", text);
        if (!r.getChat()) {
          return encode("prompt", text, true);
        }
        ChatTemplate template =
            tokenizer
                .chatTemplate()
                .orElseThrow(
                    () ->
                        invalid(
                            "chat: model '"
                                + modelName
                                + "' has no chat template; send the prompt without chat"));
        String rendered;
        try {
          rendered = template.render(List.of(new ChatMessage("user", text)), true);
        } catch (RuntimeException e) {
          throw invalid("chat: the model's chat template refused the prompt: " + e.getMessage());
        }
        // The template writes the special tokens itself (as apply_chat_template does).
        return encode("prompt", rendered, false);
      }
      case TOKEN_IDS -> {
        if (r.getChat()) {
          throw invalid("chat: applies to a text prompt only, not to prompt.token_ids");
        }
        List<Integer> ids = r.getTokenIds().getIdsList();
        if (ids.isEmpty()) {
          throw invalid("prompt: prompt.token_ids is empty");
        }
        return vocabularyIds("prompt.token_ids", ids);
      }
      default -> throw invalid("prompt: set either text or token_ids");
    }
  }

  /** Text to tokenize must fit max-prompt-chars, checked before the tokenizer sees it. */
  void checkTextLength(String field, String text) {
    if (text.length() > settings.maxPromptChars()) {
      throw invalid(
          field + ": " + text.length() + " characters, the limit is " + settings.maxPromptChars());
    }
  }

  /**
   * Tokenizes client text. The tokenizer refuses a character its vocabulary cannot express (no
   * byte fallback, no unk token): that is the client's text, so INVALID_ARGUMENT naming the field.
   */
  int[] encode(String field, String text, boolean addSpecialTokens) {
    try {
      return tokenizer.encode(text, addSpecialTokens);
    } catch (TokenizerException e) {
      throw invalid(
          field
              + ": the model's tokenizer cannot encode this text ("
              + e.getMessage()
              + "); remove or replace the characters it cannot encode");
    }
  }

  private SamplingSpec sampling(GenerateRequest r) {
    var s = r.getSampling();
    float temperature = s.hasTemperature() ? s.getTemperature() : 1.0f;
    if (!(temperature >= 0f && temperature <= MAX_TEMPERATURE)) {
      throw invalid(
          "sampling.temperature: must be in [0, "
              + (int) MAX_TEMPERATURE
              + "], got "
              + temperature);
    }
    float topP = s.hasTopP() ? s.getTopP() : 1.0f;
    if (!(topP > 0f && topP <= 1f)) {
      throw invalid("sampling.top_p: must be in (0, 1], got " + topP);
    }
    if (s.getTopK() < 0) {
      throw invalid("sampling.top_k: must be >= 0 (0 = no limit), got " + s.getTopK());
    }
    float minP = s.getMinP();
    if (!(minP >= 0f && minP <= 1f)) {
      throw invalid("sampling.min_p: must be in [0, 1], got " + minP);
    }
    float penalty = s.hasRepetitionPenalty() ? s.getRepetitionPenalty() : 1.0f;
    if (!(penalty > 0f) || !Float.isFinite(penalty)) {
      throw invalid("sampling.repetition_penalty: must be a finite number > 0, got " + penalty);
    }
    long seed = s.hasSeed() ? s.getSeed() : seeds.nextLong();
    try {
      new SamplingParams(temperature, s.getTopK(), topP, minP, penalty, seed); // core's own rules
    } catch (IllegalArgumentException e) {
      throw invalid("sampling: " + e.getMessage());
    }
    return SamplingSpec.newBuilder()
        .setTemperature(temperature)
        .setTopK(s.getTopK())
        .setTopP(topP)
        .setMinP(minP)
        .setRepetitionPenalty(penalty)
        .setSeed(seed)
        .build();
  }

  static StatusRuntimeException invalid(String description) {
    return new StatusRuntimeException(Status.INVALID_ARGUMENT.withDescription(description));
  }
}
