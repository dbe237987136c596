package io.moecluster.core.tokenizer;

/** One turn of a conversation passed to a {@link ChatTemplate}, e.g. ("user", "Hi"). */
public record ChatMessage(String role, String content) {}
