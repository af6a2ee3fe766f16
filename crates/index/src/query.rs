//! Running a [`Filter`] on one segment.
//!
//! A filter becomes a [`Plan`] once per query; on each segment the plan
//! becomes [`Matches`]: one cursor per condition, each able to jump to its
//! next matching document at or after (or at or before) a target, and the
//! cursors leapfrog until they agree. Term conditions walk posting lists
//! block by block; range conditions walk a column's blocks and skip every
//! block whose least and greatest values miss the range. The rarest list
//! leads, so a rare actor among millions of events costs about one block
//! decode per match, and a page stops after its last match, whichever end
//! it starts from.
//!
//! Free text is asked as its words and identifiers (field `TEXT`) and, for
//! each phrase, the pairs of its consecutive words (field `TEXT_PAIR`).
//! Two words are a phrase exactly; for longer phrases the pairs only
//! narrow the candidates, each of which is read back through the
//! [`EventSource`] and kept only if one of its strings holds the phrase.

use std::sync::{Arc, Mutex};

use sealtrail_event::glob::{is_glob, Glob};
use sealtrail_segment::{Column, FormatError, Postings, BLOCK};

use crate::error::IndexError;
use crate::filter::{Filter, TimeRange};
use crate::part::Seg;
use crate::schema::{self, *};
use crate::source::EventSource;
use crate::text::{holds_phrase, push_pair, TextQuery};

/// One term condition of a plan: the document must hold one of its terms.
enum TermCondition {
    Exact(u8, Vec<u8>),
    /// An action matching this glob, compiled once per query.
    ActionGlob(Glob),
    /// A target with this id, of any type.
    TargetId(String),
    /// Any of these terms.
    AnyOf(Vec<(u8, Vec<u8>)>),
}

/// A filter in terms of fields and columns.
pub(crate) struct Plan {
    terms: Vec<TermCondition>,
    /// Column, least and greatest value allowed (inclusive).
    ranges: Vec<(usize, u64, u64)>,
    /// Nothing can match (an empty time range).
    pub nothing: bool,
    /// Phrases of three or more words, checked on each candidate event.
    phrases: Vec<Vec<String>>,
    /// [`Filter::text_alternatives`]: a candidate holding one passes the
    /// phrase check.
    alternatives: Vec<String>,
    source: Option<Arc<dyn EventSource>>,
    /// The first failure to read an event back; it ends the query.
    failure: Mutex<Option<IndexError>>,
}

impl Plan {
    /// The plan of `filter`. `source` reads events back for phrases of
    /// three or more words; without one such a filter is refused.
    pub fn new(filter: &Filter, source: Option<Arc<dyn EventSource>>) -> Result<Plan, IndexError> {
        let mut plan = Plan {
            terms: Vec::new(),
            ranges: Vec::new(),
            nothing: false,
            phrases: Vec::new(),
            alternatives: Vec::new(),
            source,
            failure: Mutex::new(None),
        };
        let exact = |field: u8, value: &str| TermCondition::Exact(field, value.as_bytes().to_vec());
        if let Some(action) = &filter.action {
            if is_glob(action) {
                plan.terms.push(TermCondition::ActionGlob(Glob::new(action)));
            } else {
                plan.terms.push(exact(ACTION, action));
            }
        }
        if let Some(actor) = &filter.actor {
            plan.terms.push(exact(ACTOR, actor));
        }
        match (&filter.target_type, &filter.target_id) {
            (Some(kind), Some(id)) => {
                let mut term = Vec::new();
                schema::push_target_term(&mut term, kind, id);
                plan.terms.push(TermCondition::Exact(TARGET, term));
            }
            (Some(kind), None) => plan.terms.push(exact(TARGET_TYPE, kind)),
            (None, Some(id)) => plan.terms.push(TermCondition::TargetId(id.clone())),
            (None, None) => {}
        }
        for (field, value) in [
            (TENANT, &filter.tenant),
            (WORKFLOW, &filter.workflow),
            (SERVICE, &filter.service),
            (SESSION, &filter.session),
        ] {
            if let Some(v) = value {
                plan.terms.push(exact(field, v));
            }
        }
        if let Some(ip) = filter.ip {
            plan.terms.push(TermCondition::Exact(IP, ip.to_string().into_bytes()));
        }
        if let Some(text) = &filter.text {
            let query = TextQuery::parse(text);
            // With alternatives, each condition of the text is "it, or an
            // alternative": together, the text or any alternative.
            let alternatives: Vec<(u8, Vec<u8>)> = filter
                .text_alternatives
                .iter()
                .map(|a| (TEXT, a.as_bytes().to_vec()))
                .collect();
            let condition = |field: u8, term: Vec<u8>| {
                if alternatives.is_empty() {
                    TermCondition::Exact(field, term)
                } else {
                    let mut any = vec![(field, term)];
                    any.extend(alternatives.iter().cloned());
                    TermCondition::AnyOf(any)
                }
            };
            plan.terms
                .extend(query.terms.into_iter().map(|t| condition(TEXT, t.into_bytes())));
            plan.alternatives = filter.text_alternatives.clone();
            for phrase in query.phrases {
                for pair in phrase.windows(2) {
                    let mut term = Vec::new();
                    push_pair(&mut term, &pair[0], &pair[1]);
                    plan.terms.push(condition(TEXT_PAIR, term));
                }
                if phrase.len() > 2 {
                    if plan.source.is_none() {
                        return Err(IndexError::NoEventSource {
                            phrase: phrase.join(" "),
                        });
                    }
                    plan.phrases.push(phrase);
                }
            }
        }
        if filter.failures {
            plan.terms.push(TermCondition::Exact(FLAG, FAILURE.to_vec()));
        }
        if let Some(o) = filter.outcome {
            let code = schema::outcome_code(o);
            plan.ranges.push((OUTCOME, code, code));
        }
        if let Some(s) = filter.min_severity {
            if s > sealtrail_event::Severity::Debug {
                plan.ranges.push((SEVERITY, schema::severity_code(s), u64::MAX));
            }
        }
        for (column, range) in [(OCCURRED, &filter.occurred), (RECEIVED, &filter.received)] {
            match time_bounds(range) {
                None => plan.nothing = true,
                Some(Some((lo, hi))) => plan.ranges.push((column, lo, hi)),
                Some(None) => {}
            }
        }
        Ok(plan)
    }

    /// Only documents of ledger index `n` or more match (those below are
    /// forgotten).
    pub fn at_least(&mut self, n: u64) {
        if n > 0 {
            self.ranges.push((LEDGER, n, u64::MAX));
        }
    }

    /// The first failure to read back an event while running the plan;
    /// results gathered since are incomplete.
    pub fn failure(&self) -> Result<(), IndexError> {
        match self.failure.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The plan on `seg`; `None` if no document of it can match.
    pub fn on<'a>(&'a self, seg: &'a Seg) -> Result<Option<Matches<'a>>, FormatError> {
        self.on_holding(seg, None)
    }

    /// The plan on `seg`, narrowed to documents holding one of `terms`
    /// (term numbers of `seg`) when given; `None` if no document of it can
    /// match.
    pub fn on_holding<'a>(&'a self, seg: &'a Seg, terms: Option<&[u32]>) -> Result<Option<Matches<'a>>, FormatError> {
        if self.nothing {
            return Ok(None);
        }
        let mut lists: Vec<Vec<Postings<'a>>> = Vec::with_capacity(self.terms.len() + 1);
        if let Some(terms) = terms {
            if terms.is_empty() {
                return Ok(None);
            }
            lists.push(terms.iter().map(|&t| seg.postings(t)).collect::<Result<_, _>>()?);
        }
        for condition in &self.terms {
            let terms: Vec<u32> = match condition {
                TermCondition::Exact(field, bytes) => seg.find(*field, bytes)?.into_iter().collect(),
                TermCondition::AnyOf(any) => {
                    let mut found = Vec::new();
                    for (field, bytes) in any {
                        found.extend(seg.find(*field, bytes)?);
                    }
                    found.sort_unstable();
                    found.dedup();
                    found
                }
                TermCondition::ActionGlob(glob) => {
                    let all = seg.field_terms(ACTION);
                    let mut matching = Vec::new();
                    for t in all.clone() {
                        if std::str::from_utf8(seg.term_bytes(t)?).is_ok_and(|a| glob.matches(a)) {
                            matching.push(t);
                        }
                    }
                    // Every event has an action: all of them is no condition.
                    if !matching.is_empty() && matching.len() == all.len() {
                        continue;
                    }
                    matching
                }
                TermCondition::TargetId(id) => {
                    let (mut term, mut found) = (Vec::new(), Vec::new());
                    for t in seg.field_terms(TARGET_TYPE) {
                        let Ok(kind) = std::str::from_utf8(seg.term_bytes(t)?) else {
                            continue;
                        };
                        term.clear();
                        schema::push_target_term(&mut term, kind, id);
                        found.extend(seg.find(TARGET, &term)?);
                    }
                    found
                }
            };
            if terms.is_empty() {
                return Ok(None);
            }
            lists.push(terms.into_iter().map(|t| seg.postings(t)).collect::<Result<_, _>>()?);
        }
        // The rarest condition leads.
        lists.sort_by_key(|l| l.iter().map(|p| u64::from(p.len())).sum::<u64>());
        let mut cursors: Vec<Cursor<'a>> = lists
            .into_iter()
            .map(|l| Cursor::Lists(l.into_iter().map(List::new).collect()))
            .collect();
        for &(column, lo, hi) in &self.ranges {
            let Some(column) = seg.column(column) else {
                return Ok(None);
            };
            cursors.push(Cursor::Range(Range {
                values: Values::new(column),
                lo,
                hi,
            }));
        }
        let phrases = match (&self.source, self.phrases.is_empty()) {
            (Some(source), false) => Some(PhraseCheck {
                ledger: match seg.column(LEDGER) {
                    Some(ledger) => Values::new(ledger),
                    None => return Ok(None),
                },
                source: source.as_ref(),
                phrases: &self.phrases,
                alternatives: &self.alternatives,
                failure: &self.failure,
                failed: false,
                number: String::new(),
                scratch: String::new(),
            }),
            _ => None,
        };
        Ok(Some(Matches {
            cursors,
            docs: seg.docs(),
            phrases,
        }))
    }
}

/// Reads each candidate back and keeps it if every phrase holds.
struct PhraseCheck<'a> {
    ledger: Values<'a>,
    source: &'a dyn EventSource,
    phrases: &'a [Vec<String>],
    alternatives: &'a [String],
    failure: &'a Mutex<Option<IndexError>>,
    failed: bool,
    number: String,
    scratch: String,
}

impl PhraseCheck<'_> {
    fn holds(&mut self, doc: u32) -> Result<bool, FormatError> {
        let Some(ledger) = self.ledger.get(doc)? else {
            return Ok(false);
        };
        let event = match self.source.event(ledger) {
            Ok(Some(event)) => event,
            Ok(None) => return Ok(false),
            Err(source) => {
                self.failed = true;
                let mut failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
                failure.get_or_insert(IndexError::Source { index: ledger, source });
                return Ok(false);
            }
        };
        let scratch = &mut self.scratch;
        if !self.alternatives.is_empty() {
            let mut pseudonym = false;
            schema::for_each_text(&event, &mut self.number, |t| {
                pseudonym = pseudonym || self.alternatives.iter().any(|a| t.ends_with(a.as_str()));
            });
            if pseudonym {
                return Ok(true);
            }
        }
        Ok(self.phrases.iter().all(|phrase| {
            let mut found = false;
            schema::for_each_text(&event, &mut self.number, |t| {
                found = found || holds_phrase(t, phrase, scratch);
            });
            found
        }))
    }
}

/// Inclusive bounds of a time range in column values: `Some(None)` sets no
/// condition, `None` matches nothing.
fn time_bounds(range: &TimeRange) -> Option<Option<(u64, u64)>> {
    if *range == TimeRange::default() {
        return Some(None);
    }
    let lo = range.since.map_or(0, schema::time_value);
    let hi = match range.until {
        None => u64::MAX,
        Some(u) => schema::time_value(u).checked_sub(1)?,
    };
    (lo <= hi).then_some(Some((lo, hi)))
}

/// The documents of one segment that a plan matches.
pub(crate) struct Matches<'a> {
    cursors: Vec<Cursor<'a>>,
    docs: u32,
    phrases: Option<PhraseCheck<'a>>,
}

impl Matches<'_> {
    /// The first match at or after `target`.
    pub fn ge(&mut self, mut target: u32) -> Result<Option<u32>, FormatError> {
        loop {
            let Some(d) = self.terms_ge(target)? else {
                return Ok(None);
            };
            let Some(check) = &mut self.phrases else {
                return Ok(Some(d));
            };
            if check.holds(d)? {
                return Ok(Some(d));
            }
            if check.failed {
                return Ok(None);
            }
            let Some(next) = d.checked_add(1) else { return Ok(None) };
            target = next;
        }
    }

    /// The last match at or before `target`.
    pub fn le(&mut self, mut target: u32) -> Result<Option<u32>, FormatError> {
        loop {
            let Some(d) = self.terms_le(target)? else {
                return Ok(None);
            };
            let Some(check) = &mut self.phrases else {
                return Ok(Some(d));
            };
            if check.holds(d)? {
                return Ok(Some(d));
            }
            if check.failed {
                return Ok(None);
            }
            let Some(next) = d.checked_sub(1) else { return Ok(None) };
            target = next;
        }
    }

    /// The first document at or after `target` that every cursor holds.
    fn terms_ge(&mut self, mut target: u32) -> Result<Option<u32>, FormatError> {
        'again: loop {
            if target >= self.docs {
                return Ok(None);
            }
            for c in &mut self.cursors {
                let Some(d) = c.ge(target)? else { return Ok(None) };
                if d != target {
                    target = d;
                    continue 'again;
                }
            }
            return Ok(Some(target));
        }
    }

    /// The last document at or before `target` that every cursor holds.
    fn terms_le(&mut self, target: u32) -> Result<Option<u32>, FormatError> {
        let Some(last) = self.docs.checked_sub(1) else {
            return Ok(None);
        };
        let mut target = target.min(last);
        'again: loop {
            for c in &mut self.cursors {
                let Some(d) = c.le(target)? else { return Ok(None) };
                if d != target {
                    target = d;
                    continue 'again;
                }
            }
            return Ok(Some(target));
        }
    }

    /// Call `visit` with each match from `first` up, ascending, while it
    /// returns `Ok(true)`. False if `visit` stopped it.
    pub fn ascending<E: From<FormatError>>(
        &mut self,
        first: u32,
        mut visit: impl FnMut(u32) -> Result<bool, E>,
    ) -> Result<bool, E> {
        let mut next = first;
        while let Some(d) = self.ge(next)? {
            if !visit(d)? {
                return Ok(false);
            }
            next = d + 1;
        }
        Ok(true)
    }

    /// Call `visit` with each match from `last` down, descending, while it
    /// returns `Ok(true)`. False if `visit` stopped it.
    pub fn descending<E: From<FormatError>>(
        &mut self,
        last: u32,
        mut visit: impl FnMut(u32) -> Result<bool, E>,
    ) -> Result<bool, E> {
        let mut next = last;
        while let Some(d) = self.le(next)? {
            if !visit(d)? {
                return Ok(false);
            }
            let Some(below) = d.checked_sub(1) else { break };
            next = below;
        }
        Ok(true)
    }

    /// Call `visit` with every match, ascending.
    pub fn for_each(&mut self, mut visit: impl FnMut(u32) -> Result<(), FormatError>) -> Result<(), FormatError> {
        self.ascending(0, |d| visit(d).map(|()| true)).map(drop)
    }

    /// How many documents match.
    pub fn count(&mut self) -> Result<u64, FormatError> {
        match self.cursors.as_slice() {
            _ if self.phrases.is_some() => {}
            [] => return Ok(u64::from(self.docs)),
            [Cursor::Lists(lists)] if lists.len() == 1 => return Ok(u64::from(lists[0].postings.len())),
            _ => {}
        }
        let mut n = 0;
        self.for_each(|_| {
            n += 1;
            Ok(())
        })?;
        Ok(n)
    }
}

enum Cursor<'a> {
    /// Documents holding any of these terms.
    Lists(Vec<List<'a>>),
    Range(Range<'a>),
}

impl Cursor<'_> {
    fn ge(&mut self, target: u32) -> Result<Option<u32>, FormatError> {
        match self {
            Cursor::Lists(lists) => {
                let mut first = None;
                for l in lists {
                    first = first.into_iter().chain(l.ge(target)?).min();
                }
                Ok(first)
            }
            Cursor::Range(r) => r.ge(target),
        }
    }

    fn le(&mut self, target: u32) -> Result<Option<u32>, FormatError> {
        match self {
            Cursor::Lists(lists) => {
                let mut last = None;
                for l in lists {
                    last = last.into_iter().chain(l.le(target)?).max();
                }
                Ok(last)
            }
            Cursor::Range(r) => r.le(target),
        }
    }
}

/// A posting list with its last decoded block.
struct List<'a> {
    postings: Postings<'a>,
    block: Option<u32>,
    docs: Vec<u32>,
}

impl<'a> List<'a> {
    fn new(postings: Postings<'a>) -> List<'a> {
        List {
            postings,
            block: None,
            docs: Vec::with_capacity(BLOCK as usize),
        }
    }

    fn load(&mut self, b: u32) -> Result<(), FormatError> {
        if self.block != Some(b) {
            self.docs.clear();
            self.block = None;
            self.postings.block(b, &mut self.docs)?;
            self.block = Some(b);
        }
        Ok(())
    }

    /// Whether the decoded block spans `target`.
    fn spans(&self, target: u32) -> bool {
        matches!((self.docs.first(), self.docs.last()), (Some(&a), Some(&z)) if a <= target && target <= z)
    }

    /// The decoded block if it spans `target`, else the block that may
    /// hold `seek`.
    fn start(&self, target: u32, seek: u32) -> u32 {
        match self.block {
            Some(b) if self.spans(target) => b,
            _ => self.postings.seek_block(seek),
        }
    }

    fn ge(&mut self, target: u32) -> Result<Option<u32>, FormatError> {
        let mut b = self.start(target, target);
        while b < self.postings.blocks() {
            self.load(b)?;
            let i = self.docs.partition_point(|&d| d < target);
            if let Some(&d) = self.docs.get(i) {
                return Ok(Some(d));
            }
            b += 1;
        }
        Ok(None)
    }

    fn le(&mut self, target: u32) -> Result<Option<u32>, FormatError> {
        // Every document of a later block exceeds `target`.
        let mut b = self.start(target, target.saturating_add(1));
        loop {
            self.load(b)?;
            let i = self.docs.partition_point(|&d| d <= target);
            if let Some(i) = i.checked_sub(1) {
                return Ok(self.docs.get(i).copied());
            }
            let Some(before) = b.checked_sub(1) else {
                return Ok(None);
            };
            b = before;
        }
    }
}

/// A column with its last decoded block, read by document.
pub(crate) struct Values<'a> {
    column: Column<'a>,
    block: Option<u32>,
    values: Vec<u64>,
}

impl<'a> Values<'a> {
    pub fn new(column: Column<'a>) -> Values<'a> {
        Values {
            column,
            block: None,
            values: Vec::with_capacity(BLOCK as usize),
        }
    }

    fn load(&mut self, b: u32) -> Result<&[u64], FormatError> {
        if self.block != Some(b) {
            self.values.clear();
            self.block = None;
            self.column.block(b, &mut self.values)?;
            self.block = Some(b);
        }
        Ok(&self.values)
    }

    /// The value of `doc`; `None` past the segment's last document.
    pub fn get(&mut self, doc: u32) -> Result<Option<u64>, FormatError> {
        Ok(self.load(doc / BLOCK)?.get((doc % BLOCK) as usize).copied())
    }
}

/// Documents whose value in a column lies in `lo..=hi`.
struct Range<'a> {
    values: Values<'a>,
    lo: u64,
    hi: u64,
}

impl Range<'_> {
    /// Whether block `b` may hold a match, and whether every value does.
    fn block(&self, b: u32) -> Result<(bool, bool), FormatError> {
        Ok(match self.values.column.block_range(b)? {
            Some((min, max)) => (min <= self.hi && self.lo <= max, self.lo <= min && max <= self.hi),
            None => (false, false),
        })
    }

    fn ge(&mut self, target: u32) -> Result<Option<u32>, FormatError> {
        let (mut b, mut from) = (target / BLOCK, target);
        while b < self.values.column.blocks() {
            match self.block(b)? {
                (_, true) => return Ok(Some(from)),
                (true, false) => {
                    let (lo, hi) = (self.lo, self.hi);
                    let start = (from - b * BLOCK) as usize;
                    let values = self.values.load(b)?;
                    let Some(rest) = values.get(start..) else {
                        return Ok(None);
                    };
                    if let Some(i) = rest.iter().position(|v| (lo..=hi).contains(v)) {
                        return Ok(Some(from + i as u32));
                    }
                }
                (false, _) => {}
            }
            b += 1;
            from = b * BLOCK;
        }
        Ok(None)
    }

    fn le(&mut self, target: u32) -> Result<Option<u32>, FormatError> {
        let (mut b, mut to) = (target / BLOCK, target);
        loop {
            match self.block(b)? {
                (_, true) => return Ok(Some(to)),
                (true, false) => {
                    let (lo, hi) = (self.lo, self.hi);
                    let end = (to - b * BLOCK) as usize;
                    let values = self.values.load(b)?;
                    let upto = values.get(..=end).unwrap_or(values);
                    if let Some(i) = upto.iter().rposition(|v| (lo..=hi).contains(v)) {
                        return Ok(Some(b * BLOCK + i as u32));
                    }
                }
                (false, _) => {}
            }
            let Some(before) = b.checked_sub(1) else {
                return Ok(None);
            };
            b = before;
            to = b * BLOCK + BLOCK - 1;
        }
    }
}

/// The first document of `seg` whose ledger index is at least `ledger`
/// (the segment's document count if none): ledger indices ascend with
/// documents.
pub(crate) fn first_at_or_after(seg: &Seg, ledger: u64) -> Result<u32, FormatError> {
    let Some(column) = seg.column(LEDGER) else { return Ok(0) };
    let blocks = column.blocks();
    // The first block whose greatest value reaches `ledger`.
    let (mut lo, mut hi) = (0, blocks);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if column.block_range(mid)?.is_some_and(|(_, max)| max < ledger) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if lo >= blocks {
        return Ok(seg.docs());
    }
    let mut values = Vec::with_capacity(BLOCK as usize);
    column.block(lo, &mut values)?;
    Ok(lo * BLOCK + values.partition_point(|&v| v < ledger) as u32)
}
