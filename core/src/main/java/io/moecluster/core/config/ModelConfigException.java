package io.moecluster.core.config;

/** A config.json that the runtime cannot use; the message says which file and which key. */
public final class ModelConfigException extends RuntimeException {
  public ModelConfigException(String message) {
    super(message);
  }

  public ModelConfigException(String message, Throwable cause) {
    super(message, cause);
  }
}
