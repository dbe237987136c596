package io.moecluster.expert.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The registration bookkeeping over a fake driver (no GPU, no memory behind the addresses). */
class HostRegistrationsTest {
  private static final long GIB = HostRegistrations.CHUNK_BYTES;
  // An address range standing for a large mapping: the fake driver never touches its bytes.
  private static final MemorySegment MAPPING = MemorySegment.ofAddress(1L << 40).reinterpret(2 * GIB + GIB / 2);

  /** Records calls; refuses the chunk that starts at {@code refuseAt} (-1: none). */
  private static final class FakeDriver implements HostRegistrations.Driver {
    final List<Long> registered = new ArrayList<>();
    final List<Long> unregistered = new ArrayList<>();
    long refuseAt = -1;

    @Override
    public void register(MemorySegment chunk) {
      if (chunk.address() == refuseAt) {
        throw new IllegalStateException("CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED");
      }
      registered.add(chunk.byteSize());
    }

    @Override
    public void unregister(MemorySegment chunk) {
      unregistered.add(chunk.byteSize());
    }
  }

  @Test
  void aLargeRegionIsRegisteredInChunksAndAnUploadMustLieInOne() {
    FakeDriver driver = new FakeDriver();
    HostRegistrations r = new HostRegistrations(driver);
    assertEquals(MAPPING.byteSize(), r.register(MAPPING));
    assertEquals(List.of(GIB, GIB, GIB / 2), driver.registered);
    assertEquals(MAPPING.byteSize(), r.registeredBytes());

    assertTrue(r.contains(MAPPING.asSlice(4096, 17 << 20)), "an expert inside the first chunk");
    assertTrue(r.contains(MAPPING.asSlice(2 * GIB, GIB / 2)), "the whole last chunk");
    assertFalse(r.contains(MAPPING.asSlice(GIB - 4096, 8192)), "across a chunk boundary: staging");
    assertFalse(r.contains(MemorySegment.ofAddress(1L << 41).reinterpret(4096)), "elsewhere: staging");

    r.clear();
    assertEquals(List.of(GIB, GIB, GIB / 2), driver.unregistered);
    assertEquals(0, r.registeredBytes());
    assertFalse(r.contains(MAPPING.asSlice(4096, 4096)));
  }

  @Test
  void aRefusedChunkLeavesTheEarlierOnesUsable() {
    FakeDriver driver = new FakeDriver();
    driver.refuseAt = MAPPING.address() + GIB;
    HostRegistrations r = new HostRegistrations(driver);
    assertEquals(GIB, r.register(MAPPING), "registered up to the refusal");
    assertTrue(r.contains(MAPPING.asSlice(0, 4096)));
    assertFalse(r.contains(MAPPING.asSlice(GIB, 4096)));
    assertFalse(r.contains(MAPPING.asSlice(2 * GIB, 4096)), "nothing after the refusal");
  }
}
