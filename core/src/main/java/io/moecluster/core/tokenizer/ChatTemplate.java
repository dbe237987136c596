package io.moecluster.core.tokenizer;

import com.hubspot.jinjava.Jinjava;
import com.hubspot.jinjava.JinjavaConfig;
import com.hubspot.jinjava.interpret.RenderResult;
import com.hubspot.jinjava.interpret.TemplateError;
import com.hubspot.jinjava.lib.fn.ELFunctionDefinition;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * A model's Jinja chat template (tokenizer_config.json "chat_template"), rendered with jinjava the
 * way transformers' apply_chat_template does: trim_blocks and lstrip_blocks on, {@code messages},
 * {@code add_generation_prompt}, {@code bos_token}, {@code eos_token} and {@code raise_exception}.
 */
public final class ChatTemplate {
  private static final Jinjava JINJAVA = createJinjava();

  private final String template;
  private final String bosToken;
  private final String eosToken;

  /**
   * @param bosToken the value of {@code bos_token} in the template; null renders as empty
   * @param eosToken the value of {@code eos_token} in the template; null renders as empty
   */
  public ChatTemplate(String template, String bosToken, String eosToken) {
    this.template = template;
    this.bosToken = bosToken;
    this.eosToken = eosToken;
  }

  public String template() {
    return template;
  }

  /** Raised by a template's {@code raise_exception(message)}. */
  static final class TemplateRaisedException extends RuntimeException {
    TemplateRaisedException(String message) {
      super(message);
    }
  }

  /**
   * Bound to {@code raise_exception} in templates; public because jinjava calls it reflectively.
   */
  public static Object raiseException(String message) {
    throw new TemplateRaisedException(message);
  }

  private static Jinjava createJinjava() {
    Jinjava jinjava =
        new Jinjava(JinjavaConfig.newBuilder().withTrimBlocks(true).withLstripBlocks(true).build());
    jinjava
        .getGlobalContext()
        .registerFunction(
            new ELFunctionDefinition(
                "", "raise_exception", ChatTemplate.class, "raiseException", String.class));
    return jinjava;
  }

  public String render(List<ChatMessage> messages, boolean addGenerationPrompt) {
    List<Map<String, Object>> messageMaps = new ArrayList<>();
    for (ChatMessage message : messages) {
      Map<String, Object> map = new HashMap<>();
      map.put("role", message.role());
      map.put("content", message.content());
      messageMaps.add(map);
    }
    Map<String, Object> bindings = new HashMap<>();
    bindings.put("messages", messageMaps);
    bindings.put("add_generation_prompt", addGenerationPrompt);
    bindings.put("bos_token", bosToken == null ? "" : bosToken);
    bindings.put("eos_token", eosToken == null ? "" : eosToken);
    RenderResult result = JINJAVA.renderForResult(template, bindings);
    for (TemplateError error : result.getErrors()) {
      TemplateRaisedException raised = findRaised(error.getException());
      if (raised != null) {
        throw new TokenizerException(
            "The chat template rejected the conversation: " + raised.getMessage(), raised);
      }
    }
    for (TemplateError error : result.getErrors()) {
      if (error.getSeverity() == TemplateError.ErrorType.FATAL) {
        throw new TokenizerException(
            "The chat template in tokenizer_config.json failed to render: "
                + error.getMessage()
                + " (line "
                + error.getLineno()
                + "); fix chat_template there",
            error.getException());
      }
    }
    return result.getOutput();
  }

  private static TemplateRaisedException findRaised(Throwable throwable) {
    for (Throwable t = throwable; t != null; t = t.getCause()) {
      if (t instanceof TemplateRaisedException raised) {
        return raised;
      }
      if (t.getCause() == t) {
        break;
      }
    }
    return null;
  }
}
