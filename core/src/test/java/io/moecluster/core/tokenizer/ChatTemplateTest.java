package io.moecluster.core.tokenizer;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import org.junit.jupiter.api.Test;

/** Chat templates render exactly as transformers' apply_chat_template would. */
class ChatTemplateTest {
  private static final List<ChatMessage> CONVERSATION =
      List.of(new ChatMessage("system", "Be brief."), new ChatMessage("user", "What is 2+2?"));

  static final String CHATML =
      "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n"
          + "' + message['content'] + '<|im_end|>' + '\\n"
          + "' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n"
          + "' }}{% endif %}";

  /** The template shipped with meta-llama/Llama-2-7b-chat-hf. */
  static final String LLAMA2 =
      "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set"
          + " system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages"
          + " %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if"
          + " (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{"
          + " raise_exception('Conversation roles must alternate"
          + " user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and"
          + " system_message != false %}{% set content = '<<SYS>>\\n"
          + "' + system_message + '\\n"
          + "<</SYS>>\\n"
          + "\\n"
          + "' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{%"
          + " if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + '"
          + " [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' +"
          + " eos_token }}{% endif %}{% endfor %}";

  @Test
  void rendersChatMl() {
    ChatTemplate template = new ChatTemplate(CHATML, null, null);
    assertEquals(
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
            + "<|im_start|>assistant\n",
        template.render(CONVERSATION, true));
    assertEquals(
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n",
        template.render(CONVERSATION, false));
  }

  @Test
  void rendersLlama2WithBosAndSystemPrompt() {
    ChatTemplate template = new ChatTemplate(LLAMA2, "<s>", "</s>");
    assertEquals(
        "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nWhat is 2+2? [/INST]",
        template.render(CONVERSATION, true));
    List<ChatMessage> turns =
        List.of(
            new ChatMessage("user", "Hi"),
            new ChatMessage("assistant", " Hello! "),
            new ChatMessage("user", "Bye"));
    assertEquals(
        "<s>[INST] Hi [/INST] Hello! </s><s>[INST] Bye [/INST]", template.render(turns, true));
  }

  @Test
  void raiseExceptionBecomesTokenizerException() {
    ChatTemplate template = new ChatTemplate(LLAMA2, "<s>", "</s>");
    List<ChatMessage> twoUsers =
        List.of(new ChatMessage("user", "a"), new ChatMessage("user", "b"));
    TokenizerException e =
        assertThrows(TokenizerException.class, () -> template.render(twoUsers, true));
    assertTrue(e.getMessage().contains("Conversation roles must alternate"), e.getMessage());
  }

  @Test
  void loadsTheTemplateFromTokenizerConfig() {
    Tokenizer tokenizer = TestTokenizers.byteLevel();
    String rendered =
        tokenizer.chatTemplate().orElseThrow().render(List.of(new ChatMessage("user", "Hi")), true);
    assertEquals("<s>### user:\nHi\n### assistant:\n", rendered);
  }

  @Test
  void takesTheDefaultOfNamedTemplates() {
    String config =
        "{\"bos_token\": \"<s>\", \"chat_template\": [{\"name\": \"tool_use\", \"template\":"
            + " \"T\"}, {\"name\": \"default\", \"template\": \"{{ bos_token }}D\"}]}";
    Tokenizer tokenizer = Tokenizer.fromJson(TestTokenizers.trained().tokenizerJson(), config);
    assertEquals("<s>D", tokenizer.chatTemplate().orElseThrow().render(List.of(), false));
  }

  @Test
  void readsChatTemplateJinjaWhereTheConfigHasNone(@org.junit.jupiter.api.io.TempDir java.nio.file.Path dir)
      throws Exception {
    java.nio.file.Files.writeString(dir.resolve("tokenizer.json"), TestTokenizers.trained().tokenizerJson());
    java.nio.file.Files.writeString(dir.resolve("tokenizer_config.json"), "{\"bos_token\": \"<s>\"}");
    assertTrue(Tokenizer.load(dir).chatTemplate().isEmpty());
    java.nio.file.Files.writeString(dir.resolve("chat_template.jinja"),
        "{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}{% endfor %}");
    assertEquals("<s>[user] Hi",
        Tokenizer.load(dir).chatTemplate().orElseThrow().render(List.of(new ChatMessage("user", "Hi")), false));
    // The config's own template wins.
    java.nio.file.Files.writeString(dir.resolve("tokenizer_config.json"),
        "{\"bos_token\": \"<s>\", \"chat_template\": \"C\"}");
    assertEquals("C", Tokenizer.load(dir).chatTemplate().orElseThrow().render(List.of(), false));
  }
}
