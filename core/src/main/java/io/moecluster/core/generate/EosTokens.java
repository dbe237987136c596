package io.moecluster.core.generate;

import io.moecluster.core.config.ModelConfig;
import io.moecluster.core.tokenizer.Tokenizer;
import java.util.HashSet;
import java.util.Set;

/** The end-of-sequence ids of a model: those of config.json and those of its tokenizer. */
public final class EosTokens {
  private EosTokens() {}

  public static Set<Integer> of(ModelConfig config, Tokenizer tokenizer) {
    Set<Integer> eos = new HashSet<>(config.eosTokenIds());
    eos.addAll(tokenizer.eosTokenIds());
    return Set.copyOf(eos);
  }
}
