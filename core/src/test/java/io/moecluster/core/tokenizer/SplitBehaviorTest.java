package io.moecluster.core.tokenizer;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.List;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

/** The Split pre-tokenizer's behaviours, against what Hugging Face's tokenizers give. */
class SplitBehaviorTest {
  private static final Pattern DASH = Pattern.compile("-");
  private static final String TEXT = "the-final--countdown";

  @Test
  void eachBehaviourSplitsAsHuggingFaceDoes() {
    assertEquals(List.of("the-", "final-", "-", "countdown"),
        SplitBehavior.apply(DASH, "MergedWithPrevious", false, TEXT));
    assertEquals(List.of("the", "-final", "-", "-countdown"),
        SplitBehavior.apply(DASH, "MergedWithNext", false, TEXT));
    assertEquals(List.of("the", "-", "final", "--", "countdown"),
        SplitBehavior.apply(DASH, "Contiguous", false, TEXT));
    assertEquals(List.of("the", "-", "final", "-", "-", "countdown"),
        SplitBehavior.apply(DASH, "Isolated", false, TEXT));
    assertEquals(List.of("the", "final", "countdown"), SplitBehavior.apply(DASH, "Removed", false, TEXT));
    // A match at the start has no piece before it to join.
    assertEquals(List.of("-", "a-"), SplitBehavior.apply(DASH, "MergedWithPrevious", false, "-a-"));
  }
}
