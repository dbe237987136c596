package io.moecluster.expert.cuda;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;

/**
 * Host memory registered with the CUDA driver as a direct DMA source for uploads: the
 * checkpoint's read-only mappings, when {@code moe.expert.cuda.register-checkpoint} is on. A
 * region is registered in chunks of at most {@link #CHUNK_BYTES} (page-aligned from the region's
 * start, which a mapping's is), since the driver binding takes one {@code ByteBuffer} per call.
 * An upload whose bytes lie inside one registered chunk goes straight to the DMA engine; anything
 * else goes through the staging buffers. Used on a device's copy thread only.
 */
final class HostRegistrations {
  /** The largest piece registered at once. */
  static final long CHUNK_BYTES = 1L << 30;

  /** The driver calls (the real one is {@link CudaDevice}'s; tests pass fakes). */
  interface Driver {
    /** Registers {@code chunk} read-only; throws when the driver refuses. */
    void register(MemorySegment chunk);

    void unregister(MemorySegment chunk);
  }

  private final Driver driver;
  private final List<MemorySegment> chunks = new ArrayList<>();

  HostRegistrations(Driver driver) {
    this.driver = driver;
  }

  /**
   * Registers {@code region} chunk by chunk. Returns the bytes registered: less than the region
   * when the driver refused a chunk (those before it stay registered and usable).
   */
  long register(MemorySegment region) {
    long done = 0;
    while (done < region.byteSize()) {
      MemorySegment chunk = region.asSlice(done, Math.min(CHUNK_BYTES, region.byteSize() - done));
      try {
        driver.register(chunk);
      } catch (RuntimeException e) {
        return done;
      }
      chunks.add(chunk);
      done += chunk.byteSize();
    }
    return done;
  }

  /** Whether all of {@code bytes} lie inside one registered chunk. */
  boolean contains(MemorySegment bytes) {
    long start = bytes.address();
    long end = start + bytes.byteSize();
    for (MemorySegment c : chunks) {
      if (start >= c.address() && end <= c.address() + c.byteSize()) {
        return true;
      }
    }
    return false;
  }

  /** Bytes registered now. */
  long registeredBytes() {
    return chunks.stream().mapToLong(MemorySegment::byteSize).sum();
  }

  /** Unregisters everything (before the mappings are unmapped or the context released). */
  void clear() {
    for (MemorySegment c : chunks) {
      driver.unregister(c);
    }
    chunks.clear();
  }
}
