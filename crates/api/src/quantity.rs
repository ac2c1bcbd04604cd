//! Byte counts from Kubernetes quantities (`10Gi`, `500M`, `1e9`), for `spec.quota.maxSize`.
//!
//! Hand-written: k8s-openapi keeps a quantity as its string, and the grammar is small and fixed
//! (Kubernetes' resource.Quantity: a decimal number, then a binary suffix Ki..Ei, a decimal
//! suffix k..E, or an exponent eN / EN).

use thiserror::Error;

/// Why a quantity is not a usable byte count.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum QuantityError {
    /// Not a Kubernetes quantity at all.
    #[error("{0:?} is not a quantity (examples: 10Gi, 500M, 1000000)")]
    Malformed(String),
    /// Negative, fractional bytes, or beyond 2^64 - 1.
    #[error("{0:?} is not a whole number of bytes between 1 and 2^64-1")]
    OutOfRange(String),
}

/// The number of bytes `quantity` stands for. Fractions must come out whole (`1.5Ki` = 1536).
pub fn quantity_bytes(quantity: &str) -> Result<u64, QuantityError> {
    let q = quantity.trim();
    let malformed = || QuantityError::Malformed(quantity.to_string());
    let out_of_range = || QuantityError::OutOfRange(quantity.to_string());
    let split = q.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let (multiplier, exp10): (u128, i32) = match suffix {
        "" => (1, 0),
        "Ki" => (1 << 10, 0),
        "Mi" => (1 << 20, 0),
        "Gi" => (1 << 30, 0),
        "Ti" => (1 << 40, 0),
        "Pi" => (1 << 50, 0),
        "Ei" => (1 << 60, 0),
        "k" => (1, 3),
        "M" => (1, 6),
        "G" => (1, 9),
        "T" => (1, 12),
        "P" => (1, 15),
        "E" => (1, 18),
        "m" => (1, -3),
        s if s.starts_with(['e', 'E']) => (1, s[1..].parse::<i32>().map_err(|_| malformed())?),
        _ => return Err(malformed()),
    };
    let number = number.strip_prefix('+').unwrap_or(number);
    if number.starts_with('-') {
        return Err(out_of_range());
    }
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(malformed());
    }
    // value = digits × 10^(exp10 - len(frac)) × multiplier, in exact integer arithmetic.
    let digits: u128 = format!("{int}{frac}").parse().map_err(|_| out_of_range())?;
    let frac_len = i32::try_from(frac.len()).map_err(|_| out_of_range())?;
    let exp = exp10 - frac_len;
    let mut value = digits.checked_mul(multiplier).ok_or_else(out_of_range)?;
    if exp >= 0 {
        let pow = 10u128.checked_pow(exp.unsigned_abs()).ok_or_else(out_of_range)?;
        value = value.checked_mul(pow).ok_or_else(out_of_range)?;
    } else {
        let pow = 10u128.checked_pow(exp.unsigned_abs()).ok_or_else(out_of_range)?;
        if value % pow != 0 {
            return Err(out_of_range());
        }
        value /= pow;
    }
    match u64::try_from(value) {
        Ok(0) | Err(_) => Err(out_of_range()),
        Ok(v) => Ok(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_become_bytes() {
        for (q, bytes) in [
            ("1", 1),
            ("10Gi", 10 << 30),
            ("1.5Ki", 1536),
            ("500M", 500_000_000),
            ("1e9", 1_000_000_000),
            ("2E3", 2000),
            ("1k", 1000),
            ("+7", 7),
            (" 3Mi ", 3 << 20),
            ("15Ei", 15 << 60),
        ] {
            assert_eq!(quantity_bytes(q), Ok(bytes), "{q}");
        }
    }

    #[test]
    fn bad_quantities_are_refused() {
        assert!(matches!(quantity_bytes("16Ei"), Err(QuantityError::OutOfRange(_))));
        assert!(matches!(quantity_bytes("0"), Err(QuantityError::OutOfRange(_))));
        assert!(matches!(quantity_bytes("-1Gi"), Err(QuantityError::OutOfRange(_))));
        assert!(matches!(quantity_bytes("1.5"), Err(QuantityError::OutOfRange(_))));
        assert!(matches!(quantity_bytes("100m"), Err(QuantityError::OutOfRange(_))));
        for bad in ["", "Gi", "ten", "1GB", "1..2", "1e", "1ex"] {
            assert!(matches!(quantity_bytes(bad), Err(QuantityError::Malformed(_))), "{bad}");
        }
    }
}
