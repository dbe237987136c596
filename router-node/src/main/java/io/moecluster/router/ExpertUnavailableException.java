package io.moecluster.router;

/**
 * An expert step could not complete: no expert node answered in time, or an expert answered
 * with an error. The engine fails the step's sequences with UNAVAILABLE and keeps serving.
 */
public final class ExpertUnavailableException extends RuntimeException {
  private final int layer;
  private final int expert;

  public ExpertUnavailableException(int layer, int expert, String message, Throwable cause) {
    super(message, cause);
    this.layer = layer;
    this.expert = expert;
  }

  public int layer() {
    return layer;
  }

  public int expert() {
    return expert;
  }
}
