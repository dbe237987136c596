package io.moecluster.core.generate;

/** A candidate token and its log-probability. */
public record TokenLogprob(int tokenId, float logprob) {}
