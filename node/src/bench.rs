//! `tessera debug bench`: throughput of the CHK pipeline beside the raw primitives it is built from,
//! measured in one run on the same data, so the ratios say how close the pipeline gets to the
//! machine's limits. MB = 10⁶ bytes; rates count plaintext bytes unless stated.

use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use filenode::codec::Codec;
use filenode::crypto::AesCtr;
use filenode::hashes::sha256;
use filenode::immutable::{
    ChkParams, ChkReader, MemoryShare, MemorySink, ShareSource, convergent_key, encode_stream,
};
use futures::StreamExt;
use rayon::prelude::*;

/// Options of `tessera debug bench`.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Input size in MiB.
    #[arg(long, default_value_t = 256)]
    size_mib: u64,
    /// Shares needed (k).
    #[arg(long, default_value_t = 3)]
    needed: u16,
    /// Shares written (N).
    #[arg(long, default_value_t = 10)]
    total: u16,
    /// Maximum segment size in bytes.
    #[arg(long, default_value_t = filenode::immutable::DEFAULT_MAX_SEGMENT_SIZE)]
    max_segment_size: u64,
}

fn rate(bytes: u64, seconds: f64) -> f64 {
    bytes as f64 / seconds / 1e6
}

/// Runs `work` once to warm up, then times it three times, returning the best MB/s over `bytes`.
fn measure(bytes: u64, mut work: impl FnMut()) -> f64 {
    work();
    (0..3)
        .map(|_| {
            let start = Instant::now();
            work();
            rate(bytes, start.elapsed().as_secs_f64())
        })
        .fold(0.0, f64::max)
}

pub(crate) fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let params = ChkParams {
        needed: args.needed,
        total: args.total,
        max_segment_size: args.max_segment_size,
    };
    params.validate()?;
    let size = args.size_mib * 1024 * 1024;
    let threads = rayon::current_num_threads();
    println!(
        "tessera debug bench: {} MiB, {}-of-{}, {} byte segments, {threads} threads (MB = 10^6 bytes)",
        args.size_mib, params.needed, params.total, params.max_segment_size
    );
    let mut data = vec![0u8; size as usize];
    AesCtr::new(&[0x5a; 16]).apply(&mut data);
    let chunk = 1 << 20;

    // Raw primitives, on 1 MiB chunks of the same data.
    let sha_1 = measure(size, || {
        data.chunks(chunk).for_each(|c| {
            let _ = sha256(c);
        })
    });
    let sha_n = measure(size, || {
        data.par_chunks(chunk).for_each(|c| {
            let _ = sha256(c);
        })
    });
    let mut scratch = data.clone();
    let aes_1 = measure(size, || {
        scratch
            .chunks_mut(chunk)
            .for_each(|c| AesCtr::new(&[1; 16]).apply(c))
    });
    let aes_n = measure(size, || {
        scratch
            .par_chunks_mut(chunk)
            .for_each(|c| AesCtr::new(&[1; 16]).apply(c))
    });
    drop(scratch);
    let codec = Codec::new(params.needed as usize, params.total as usize)?;
    let segment =
        (params.max_segment_size as usize).div_ceil(params.needed as usize) * params.needed as usize;
    let block = segment / params.needed as usize;
    let parity_count = (params.total - params.needed) as usize;
    let fec = |segment_data: &[u8]| {
        let pieces: Vec<&[u8]> = segment_data.chunks(block).collect();
        let mut parity = vec![vec![0u8; block]; parity_count];
        codec.encode_parity(&pieces, &mut parity);
    };
    let whole = (size as usize / segment) * segment;
    let fec_1 = measure(whole as u64, || data[..whole].chunks(segment).for_each(fec));
    let fec_n = measure(whole as u64, || data[..whole].par_chunks(segment).for_each(fec));

    println!("\nraw primitives            1 thread      {threads} threads");
    println!("  SHA-256               {sha_1:8.0} MB/s {sha_n:8.0} MB/s");
    println!("  AES-128-CTR           {aes_1:8.0} MB/s {aes_n:8.0} MB/s");
    println!(
        "  FEC encode {:>2}-of-{:<3}   {fec_1:8.0} MB/s {fec_n:8.0} MB/s  (segment bytes)",
        params.needed, params.total
    );

    // The CHK pipeline.
    let secret = [0x42u8; 32];
    let start = Instant::now();
    let (key, _) = convergent_key(&data[..], &secret, &params)?;
    let key_seconds = start.elapsed().as_secs_f64();
    // Fault the sink's memory in before timing, so the figure is the encoder's, not the kernel's.
    let mut sink = MemorySink::default();
    let share_bound = filenode::immutable::ChkEncoder::new(key, &params, size)?.share_size() as usize;
    sink.shares = (0..params.total).map(|_| vec![1u8; share_bound]).collect();
    let start = Instant::now();
    let encoded = encode_stream(&data[..], size, key, &params, &mut sink, None)?;
    let encode_seconds = start.elapsed().as_secs_f64();
    let shares: Vec<Arc<Vec<u8>>> = sink.shares.into_iter().map(Arc::new).collect();

    let decode = |pick: &[usize]| -> anyhow::Result<f64> {
        let sources: Vec<Arc<dyn ShareSource>> = pick
            .iter()
            .map(|&i| {
                Arc::new(MemoryShare {
                    shnum: i as u16,
                    data: Arc::clone(&shares[i]),
                }) as Arc<dyn ShareSource>
            })
            .collect();
        let start = Instant::now();
        let read = futures::executor::block_on(async {
            let reader = ChkReader::open(encoded.cap, sources).await?;
            let mut stream = reader.read_range(0, size)?;
            let mut read = 0u64;
            while let Some(chunk) = stream.next().await {
                read += chunk?.len() as u64;
            }
            Ok::<u64, anyhow::Error>(read)
        })?;
        anyhow::ensure!(read == size, "decoded {read} of {size} bytes");
        Ok(rate(size, start.elapsed().as_secs_f64()))
    };
    let k = params.needed as usize;
    let primary: Vec<usize> = (0..k).collect();
    let parity: Vec<usize> = (params.total as usize - k..params.total as usize).collect();
    let decode_primary = decode(&primary)?;
    let decode_parity = decode(&parity)?;

    let encode_total = rate(size, key_seconds + encode_seconds);
    // Bytes hashed per plaintext byte: convergence pass, ciphertext segments, whole ciphertext,
    // and every block of every share (N/k); decoding hashes k blocks and the segment.
    let n_over_k = params.total as f64 / params.needed as f64;
    let encode_hash_bound = sha_n / (3.0 + n_over_k);
    let decode_hash_bound = sha_n / 2.0;
    println!("\nCHK pipeline (plaintext MB/s)");
    println!("  convergence key pass  {:8.0} MB/s", rate(size, key_seconds));
    println!("  encode pass           {:8.0} MB/s", rate(size, encode_seconds));
    println!(
        "  encode total          {encode_total:8.0} MB/s   hashing bound {encode_hash_bound:.0} MB/s ({:.0}%)",
        100.0 * encode_total / encode_hash_bound
    );
    println!(
        "  decode, shares 0..k   {decode_primary:8.0} MB/s   hashing bound {decode_hash_bound:.0} MB/s ({:.0}%)",
        100.0 * decode_primary / decode_hash_bound
    );
    println!("  decode, last k shares {decode_parity:8.0} MB/s   (erasure decoding needed)");
    println!("\ncap {}", encoded.cap.verifier());
    Ok(())
}
