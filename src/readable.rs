//! Numbers written the way people read them, for walkthroughs and benchmark tables.

/// `1048576` as `"1,048,576"`: digits in groups of three, so sizes like the
/// UDP limits (65,507 and 65,527) can be told apart at a glance.
pub(crate) fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::grouped;

    #[test]
    fn digits_come_in_groups_of_three() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1_000), "1,000");
        assert_eq!(grouped(65_507), "65,507");
        assert_eq!(grouped(1_048_576), "1,048,576");
    }
}
