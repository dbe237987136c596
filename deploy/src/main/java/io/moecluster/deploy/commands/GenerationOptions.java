package io.moecluster.deploy.commands;

import io.moecluster.core.generate.GenerationRequest;
import io.moecluster.core.sampling.SamplingParams;
import io.moecluster.core.tokenizer.ChatMessage;
import io.moecluster.core.tokenizer.Tokenizer;
import java.util.ArrayList;
import java.util.List;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Option;

/**
 * The request flags shared by every command that generates ({@code generate}, and the gRPC
 * client), so the same flags mean the same request everywhere.
 */
public final class GenerationOptions {

  /** Exactly one of the prompt forms. */
  public static final class Prompt {
    @Option(names = "--prompt", paramLabel = "TEXT", description = "prompt text (the tokenizer adds BOS where it should)")
    String text;

    @Option(names = "--prompt-ids", paramLabel = "IDS", split = ",",
        description = "prompt as comma-separated token ids, used as given (for checks against other implementations)")
    int[] ids;
  }

  @ArgGroup(exclusive = true, multiplicity = "1")
  Prompt prompt;

  @Option(names = "--chat", description = "wrap --prompt in the model's chat template as a user message")
  boolean chat;

  @Option(names = "--max-tokens", description = "most tokens to generate (default: ${DEFAULT-VALUE})", defaultValue = "128")
  int maxTokens;

  @Option(names = "--temperature", description = "0 is greedy (default: ${DEFAULT-VALUE})", defaultValue = "0.8")
  float temperature;

  @Option(names = "--top-k", description = "keep the k most likely tokens, 0 = off (default: ${DEFAULT-VALUE})", defaultValue = "0")
  int topK;

  @Option(names = "--top-p", description = "nucleus sampling, 1 = off (default: ${DEFAULT-VALUE})", defaultValue = "0.95")
  float topP;

  @Option(names = "--min-p", description = "drop tokens below min-p x the top probability, 0 = off (default: ${DEFAULT-VALUE})",
      defaultValue = "0")
  float minP;

  @Option(names = "--repetition-penalty", description = "1 = off (default: ${DEFAULT-VALUE})", defaultValue = "1")
  float repetitionPenalty;

  @Option(names = "--seed", description = "sampling seed; same seed, same tokens (default: ${DEFAULT-VALUE})", defaultValue = "0")
  long seed;

  @Option(names = "--stop", paramLabel = "TEXT", description = "stop when the text reaches this (repeatable)")
  List<String> stop = new ArrayList<>();

  @Option(names = "--ignore-eos", description = "keep generating after end-of-sequence tokens")
  boolean ignoreEos;

  @Option(names = "--json", description = "print one JSON object with the ids, the text and the speeds at the end, instead of streaming text")
  boolean json;

  public boolean json() {
    return json;
  }

  /** The sampling parameters; a value out of range is a usage error naming the flag. */
  public SamplingParams sampling() {
    try {
      return new SamplingParams(temperature, topK, topP, minP, repetitionPenalty, seed);
    } catch (IllegalArgumentException e) {
      throw new IllegalArgumentException(e.getMessage().replace("top_p", "--top-p").replace("top_k", "--top-k")
          .replace("min_p", "--min-p").replace("repetition_penalty", "--repetition-penalty")
          .replace("temperature", "--temperature"));
    }
  }

  /** The prompt as token ids. */
  public int[] promptIds(Tokenizer tokenizer) {
    if (prompt.ids != null) {
      if (chat) {
        throw new IllegalArgumentException("--chat needs --prompt text, not --prompt-ids");
      }
      return prompt.ids.clone();
    }
    if (prompt.text.isEmpty()) {
      throw new IllegalArgumentException("--prompt is empty");
    }
    if (!chat) {
      return tokenizer.encode(prompt.text);
    }
    var template = tokenizer.chatTemplate()
        .orElseThrow(() -> new IllegalArgumentException("--chat: this model's tokenizer_config.json has no chat_template"));
    String rendered = template.render(List.of(new ChatMessage("user", prompt.text)), true);
    return tokenizer.encode(rendered, false);
  }

  public GenerationRequest request(Tokenizer tokenizer) {
    if (maxTokens < 1) {
      throw new IllegalArgumentException("--max-tokens must be >= 1, got " + maxTokens);
    }
    return new GenerationRequest(promptIds(tokenizer), sampling(), maxTokens, stop, ignoreEos);
  }
}
