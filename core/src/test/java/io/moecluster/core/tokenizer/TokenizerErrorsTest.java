package io.moecluster.core.tokenizer;

import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Mistakes a user can make produce a TokenizerException that says what to fix. */
class TokenizerErrorsTest {
  @Test
  void missingTokenizerJsonNamesTheFile(@TempDir Path dir) {
    TokenizerException e = assertThrows(TokenizerException.class, () -> Tokenizer.load(dir));
    assertTrue(e.getMessage().contains(dir.resolve("tokenizer.json").toString()), e.getMessage());
    assertTrue(e.getMessage().contains("download"), e.getMessage());
  }

  @Test
  void invalidJsonIsReported(@TempDir Path dir) throws Exception {
    java.nio.file.Files.writeString(dir.resolve("tokenizer.json"), "{\"model\": [1, 2");
    TokenizerException e = assertThrows(TokenizerException.class, () -> Tokenizer.load(dir));
    assertTrue(e.getMessage().contains("not valid JSON"), e.getMessage());
    assertTrue(e.getMessage().contains("tokenizer.json"), e.getMessage());
  }

  @Test
  void unsupportedModelTypeListsWhatIsSupported() {
    String json = "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}}}";
    TokenizerException e =
        assertThrows(TokenizerException.class, () -> Tokenizer.fromJson(json, null));
    assertTrue(e.getMessage().contains("WordPiece"), e.getMessage());
    assertTrue(e.getMessage().contains("supported: BPE"), e.getMessage());
  }

  @Test
  void unsupportedPreTokenizerIsNamed() {
    String json =
        "{\"pre_tokenizer\": {\"type\": \"BertPreTokenizer\"},"
            + " \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}";
    TokenizerException e =
        assertThrows(TokenizerException.class, () -> Tokenizer.fromJson(json, null));
    assertTrue(e.getMessage().contains("BertPreTokenizer"), e.getMessage());
    assertTrue(e.getMessage().contains("Metaspace"), e.getMessage());
  }

  @Test
  void idsFarOutsideTheVocabularyAreRefusedByToken() {
    for (String id : new String[] {"2147483647", "-1", "200000000"}) {
      String json = "{\"added_tokens\": [{\"id\": " + id + ", \"content\": \"<x>\", \"special\": true}],"
          + " \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": []}}";
      TokenizerException e = assertThrows(TokenizerException.class, () -> Tokenizer.fromJson(json, null));
      assertTrue(e.getMessage().contains("'<x>' has id " + id), e.getMessage());
    }
    String vocab = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": -3}, \"merges\": []}}";
    TokenizerException e = assertThrows(TokenizerException.class, () -> Tokenizer.fromJson(vocab, null));
    assertTrue(e.getMessage().contains("'b' has id -3"), e.getMessage());
  }

  @Test
  void missingModelIsReported() {
    TokenizerException e =
        assertThrows(TokenizerException.class, () -> Tokenizer.fromJson("{}", null));
    assertTrue(e.getMessage().contains("model"), e.getMessage());
  }

  @Test
  void unknownTokenIdInDecode() {
    Tokenizer tokenizer = TestTokenizers.llama2();
    TokenizerException e =
        assertThrows(TokenizerException.class, () -> tokenizer.decode(new int[] {1, 32000}));
    assertTrue(e.getMessage().contains("32000"), e.getMessage());
    assertThrows(TokenizerException.class, () -> tokenizer.token(-1));
    assertThrows(TokenizerException.class, () -> tokenizer.streamingDecoder(false).push(1_000_000));
  }
}
