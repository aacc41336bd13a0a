//! Keyset pagination: a page is the rows after a key, in the listing's
//! order, and tells the key to continue after. (The opaque cursor clients
//! see is the API's business.)

/// Rows per page unless asked otherwise, and at most.
pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 500;

#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    pub limit: i64,
    /// Row id to continue after (exclusive), in the listing's order.
    pub after: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The key to continue after, when there is more.
    pub next: Option<i64>,
}

/// Builds a page from `limit + 1` fetched rows: the extra row only tells
/// whether there is a next page.
pub fn build<T>(mut rows: Vec<(i64, T)>, limit: i64) -> Page<T> {
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = if more { rows.last().map(|(id, _)| *id) } else { None };
    Page { items: rows.into_iter().map(|(_, t)| t).collect(), next }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_knows_whether_there_is_more() {
        let page = build(vec![(3, 'a'), (2, 'b'), (1, 'c')], 2);
        assert_eq!(page.items, vec!['a', 'b']);
        assert_eq!(page.next, Some(2));
        assert_eq!(build(vec![(1, 'a')], 2).next, None);
    }
}
