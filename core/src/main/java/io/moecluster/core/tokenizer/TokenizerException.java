package io.moecluster.core.tokenizer;

/**
 * A tokenizer that cannot be loaded or used: a missing or corrupt tokenizer.json, a component this
 * runtime does not implement, or a token id outside the vocabulary. The message names the file and
 * what to change.
 */
public final class TokenizerException extends RuntimeException {
  public TokenizerException(String message) {
    super(message);
  }

  public TokenizerException(String message, Throwable cause) {
    super(message, cause);
  }
}
