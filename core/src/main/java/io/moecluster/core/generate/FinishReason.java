package io.moecluster.core.generate;

/** Why a sequence stopped. */
public enum FinishReason {
  /** The model produced an end-of-sequence token. */
  EOS,
  /** The text reached one of the request's stop sequences. */
  STOP_SEQUENCE,
  /** {@code max_tokens} tokens were generated, or the context is full. */
  LENGTH,
  /** The caller cancelled the request. */
  CANCELLED
}
