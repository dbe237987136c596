package io.moecluster.core.tokenizer;

/**
 * An entry of tokenizer.json's "added_tokens": a string matched verbatim in the input and never
 * split by the model.
 *
 * @param lstrip whether whitespace just before the token is swallowed by it
 * @param rstrip whether whitespace just after the token is swallowed by it
 * @param singleWord whether the token only matches when it is not inside a word
 */
record AddedToken(
    int id, String content, boolean special, boolean lstrip, boolean rstrip, boolean singleWord) {}
