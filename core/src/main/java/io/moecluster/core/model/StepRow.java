package io.moecluster.core.model;

/**
 * One token of one sequence in a forward step. Rows of the same sequence in one step must be
 * consecutive positions starting at the cache's length (a prefill chunk or one decode token).
 *
 * @param wantLogits whether the caller needs this row's next-token logits (only the last prompt
 *     token of a prefill does)
 */
public record StepRow(KvCache cache, int position, int token, boolean wantLogits) {}
