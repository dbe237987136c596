package io.moecluster.core.generate;

/**
 * One generated token as it is streamed: its id, the text it completes (may be empty while a
 * multi-byte character or a possible stop sequence is held back), and its position in the output.
 */
public record TokenEvent(int index, int tokenId, String textDelta) {}
