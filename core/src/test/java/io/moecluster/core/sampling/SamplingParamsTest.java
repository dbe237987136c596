package io.moecluster.core.sampling;

import static org.junit.jupiter.api.Assertions.assertDoesNotThrow;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;

class SamplingParamsTest {

  private static void assertRejected(String field, Executable construct) {
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, construct);
    assertTrue(e.getMessage().contains(field), "message should name " + field + ": " + e.getMessage());
  }

  @Test
  void rejectsInvalidValuesNamingTheField() {
    assertRejected("temperature", () -> new SamplingParams(-1f, 0, 1f, 0f, 1f, 0L));
    assertRejected("temperature", () -> new SamplingParams(Float.NaN, 0, 1f, 0f, 1f, 0L));
    assertRejected("top_p", () -> new SamplingParams(1f, 0, 0f, 0f, 1f, 0L));
    assertRejected("top_p", () -> new SamplingParams(1f, 0, 1.5f, 0f, 1f, 0L));
    assertRejected("top_p", () -> new SamplingParams(1f, 0, Float.NaN, 0f, 1f, 0L));
    assertRejected("top_k", () -> new SamplingParams(1f, -1, 1f, 0f, 1f, 0L));
    assertRejected("min_p", () -> new SamplingParams(1f, 0, 1f, Float.NaN, 1f, 0L));
    assertRejected("repetition_penalty", () -> new SamplingParams(1f, 0, 1f, 0f, 0f, 0L));
    assertRejected("repetition_penalty", () -> new SamplingParams(1f, 0, 1f, 0f, Float.NaN, 0L));
  }

  @Test
  void acceptsBoundaryValues() {
    assertDoesNotThrow(() -> new SamplingParams(0f, 0, 1f, 0f, 1f, 0L));
    assertDoesNotThrow(() -> new SamplingParams(2f, 1, 1e-6f, 1f, 2f, -1L));
  }
}
