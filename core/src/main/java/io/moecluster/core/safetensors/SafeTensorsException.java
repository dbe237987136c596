package io.moecluster.core.safetensors;

/**
 * A checkpoint that cannot be read as asked: a malformed or lying safetensors file, a broken shard
 * index, a missing tensor, or a tensor of the wrong shape or dtype. The message always names the
 * file and, where one is involved, the tensor, so that a failed model load can be acted on.
 */
public final class SafeTensorsException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  public SafeTensorsException(String message) {
    super(message);
  }

  public SafeTensorsException(String message, Throwable cause) {
    super(message, cause);
  }
}
