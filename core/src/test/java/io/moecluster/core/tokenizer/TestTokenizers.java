package io.moecluster.core.tokenizer;

import java.net.URISyntaxException;
import java.nio.file.Path;

/** Shared fixtures: the bundled Llama 2 tokenizer and a small trained byte-level tokenizer. */
final class TestTokenizers {
  private static Tokenizer llama2;
  private static TrainedTokenizer trained;

  private TestTokenizers() {}

  static Path llama2Dir() {
    try {
      return Path.of(TestTokenizers.class.getResource("llama2/tokenizer.json").toURI()).getParent();
    } catch (URISyntaxException e) {
      throw new IllegalStateException(e);
    }
  }

  static synchronized Tokenizer llama2() {
    if (llama2 == null) {
      llama2 = Tokenizer.load(llama2Dir());
    }
    return llama2;
  }

  static synchronized TrainedTokenizer trained() {
    if (trained == null) {
      trained = ByteLevelBpeTrainer.trainOnBundledCorpus(1024);
    }
    return trained;
  }

  static Tokenizer byteLevel() {
    return Tokenizer.fromJson(trained().tokenizerJson(), trained().tokenizerConfigJson());
  }
}
