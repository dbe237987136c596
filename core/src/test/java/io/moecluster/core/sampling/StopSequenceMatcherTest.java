package io.moecluster.core.sampling;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import org.junit.jupiter.api.Test;

class StopSequenceMatcherTest {

  private static StopSequenceMatcher.Result result(String text, boolean stopped) {
    return new StopSequenceMatcher.Result(text, stopped);
  }

  @Test
  void withoutStopSequencesEverythingPassesThrough() {
    StopSequenceMatcher m = new StopSequenceMatcher(List.of());
    assertEquals(result("Hello", false), m.feed("Hello"));
    assertEquals(result(" world", false), m.feed(" world"));
    assertEquals("", m.flush());
  }

  @Test
  void stopSequenceSplitAcrossDeltas() {
    StopSequenceMatcher m = new StopSequenceMatcher(List.of("\n\nUser:"));
    assertEquals(result("Hi there.", false), m.feed("Hi there.\n"));
    assertEquals(result("", false), m.feed("\nUs"));
    assertEquals(result("", true), m.feed("er: what"));
    assertTrue(m.stopped());
    assertEquals(result("", true), m.feed("more"));
    assertEquals("", m.flush());
  }

  @Test
  void textBeforeTheStopInTheSameDeltaIsEmitted() {
    StopSequenceMatcher m = new StopSequenceMatcher(List.of("STOP"));
    assertEquals(result("ab", false), m.feed("abST"));
    assertEquals(result("STOcd", false), m.feed("Ocd"));
    assertEquals(result("xx", true), m.feed("xxSTOPyy"));
  }

  @Test
  void heldBackPrefixThatIsNotAStopIsReleased() {
    StopSequenceMatcher m = new StopSequenceMatcher(List.of("</end>"));
    assertEquals(result("a ", false), m.feed("a </e"));
    assertEquals(result("</ex", false), m.feed("x"));
    assertEquals(result("", false), m.feed("<"));
    assertEquals("<", m.flush());
  }

  @Test
  void flushReleasesAHeldPrefixWhenTheSequenceEndsOtherwise() {
    StopSequenceMatcher m = new StopSequenceMatcher(List.of("###"));
    assertEquals(result("done", false), m.feed("done##"));
    assertEquals("##", m.flush());
    assertFalse(m.stopped());
  }

  @Test
  void earliestOfSeveralStopSequencesWins() {
    StopSequenceMatcher m = new StopSequenceMatcher(List.of("world", "lo w", "xyz"));
    assertEquals(result("hel", true), m.feed("hello world"));
  }

  @Test
  void severalStopSequencesHoldTheLongestPossibleStart() {
    StopSequenceMatcher m = new StopSequenceMatcher(List.of("abc", "bcd"));
    // "ab" could start "abc"; "b" could start "bcd": hold "ab".
    assertEquals(result("x", false), m.feed("xab"));
    // "abd": neither completes; "d" starts nothing; release all.
    assertEquals(result("abd", false), m.feed("d"));
    assertEquals(result("", false), m.feed("bc"));
    assertEquals(result("", true), m.feed("d!"));
  }

  @Test
  void stopAtTheVeryStart() {
    StopSequenceMatcher m = new StopSequenceMatcher(List.of("<|im_end|>"));
    assertEquals(result("", true), m.feed("<|im_end|>trailing"));
    StopSequenceMatcher split = new StopSequenceMatcher(List.of("<|im_end|>"));
    assertEquals(result("", false), split.feed("<|im"));
    assertEquals(result("", true), split.feed("_end|>"));
  }

  @Test
  void emptyStopSequencesAreIgnored() {
    StopSequenceMatcher m = new StopSequenceMatcher(List.of("", "!"));
    assertEquals(result("hi", true), m.feed("hi!"));
  }
}
