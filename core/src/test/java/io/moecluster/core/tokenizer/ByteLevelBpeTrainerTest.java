package io.moecluster.core.tokenizer;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.util.Random;
import org.junit.jupiter.api.Test;

/** The trainer's output is deterministic, bounded and a loadable, lossless tokenizer. */
class ByteLevelBpeTrainerTest {
  @Test
  void isDeterministic() {
    assertEquals(
        ByteLevelBpeTrainer.trainOnBundledCorpus(800),
        ByteLevelBpeTrainer.trainOnBundledCorpus(800));
  }

  @Test
  void trainsFourThousandTokensWithinTheTarget() {
    // The timeout guards against a quadratic trainer (minutes here); it is not a speed target.
    TrainedTokenizer trained =
        org.junit.jupiter.api.Assertions.assertTimeoutPreemptively(
            java.time.Duration.ofSeconds(30), () -> ByteLevelBpeTrainer.trainOnBundledCorpus(4096));
    assertTrue(trained.vocabSize() <= 4096);
    assertTrue(trained.vocabSize() > 1500, "suspiciously few merges: " + trained.vocabSize());
    assertEquals(trained.vocabSize(), load(trained).vocabSize());
  }

  @Test
  void stopsAtTheTargetSize() {
    TrainedTokenizer trained = ByteLevelBpeTrainer.train("abab abab abab cdcd cdcd", 260);
    assertEquals(260, trained.vocabSize());
    assertEquals(260, load(trained).vocabSize());
    assertThrows(IllegalArgumentException.class, () -> ByteLevelBpeTrainer.train("x", 100));
  }

  @Test
  void writesTheHuggingFaceLayout() throws Exception {
    TrainedTokenizer trained = ByteLevelBpeTrainer.train("the cat the hat the bat", 300);
    JsonNode root = new ObjectMapper().readTree(trained.tokenizerJson());
    assertEquals("1.0", root.get("version").asText());
    assertEquals("<s>", root.at("/added_tokens/0/content").asText());
    assertEquals(1, root.at("/added_tokens/1/id").asInt());
    assertTrue(root.get("normalizer").isNull());
    assertEquals("ByteLevel", root.at("/pre_tokenizer/type").asText());
    assertEquals("TemplateProcessing", root.at("/post_processor/type").asText());
    assertEquals("ByteLevel", root.at("/decoder/type").asText());
    assertEquals("BPE", root.at("/model/type").asText());
    assertEquals(0, root.at("/model/vocab/<s>").asInt());
    assertEquals(2, root.at("/model/vocab/!").asInt());
    assertEquals("a t", root.at("/model/merges/0").asText()); // cat, hat, bat
    JsonNode config = new ObjectMapper().readTree(trained.tokenizerConfigJson());
    assertEquals("</s>", config.get("eos_token").asText());
    assertTrue(config.get("add_bos_token").asBoolean());
  }

  @Test
  void roundTripsArbitraryUnicode() {
    Tokenizer tokenizer = load(ByteLevelBpeTrainer.trainOnBundledCorpus(2048));
    Random random = new Random(42);
    for (int i = 0; i < 200; i++) {
      StringBuilder text = new StringBuilder();
      for (int j = 0; j < 40; j++) {
        int codePoint;
        do {
          codePoint = random.nextInt(i % 2 == 0 ? 0x3000 : Character.MAX_CODE_POINT + 1);
        } while (!Character.isDefined(codePoint)
            || Character.getType(codePoint) == Character.SURROGATE);
        text.appendCodePoint(codePoint);
      }
      String s = text.toString();
      assertEquals(s, tokenizer.decode(tokenizer.encode(s, false)));
    }
  }

  private static Tokenizer load(TrainedTokenizer trained) {
    return Tokenizer.fromJson(trained.tokenizerJson(), trained.tokenizerConfigJson());
  }
}
