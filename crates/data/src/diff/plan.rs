//! Which columns are keys, which are compared, and how.

use std::collections::HashMap;

use serde::Serialize;

use super::{DiffOptions, SchemaChanges};
use crate::{DataError, Source};

/// The two inputs' columns as the diff sees them, given to a sink before
/// any change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Layout {
    pub left: String,
    pub right: String,
    /// The left input's columns as read (before renames).
    pub left_columns: Vec<String>,
    pub right_columns: Vec<String>,
    /// Key columns, named as on the right.
    pub key_columns: Vec<String>,
    /// Compared columns, in left order, named as on the right.
    pub compared_columns: Vec<String>,
}

/// How values of one column are folded before comparing.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Fold {
    pub case: bool,
    pub whitespace: bool,
}

pub(crate) struct SidePlan {
    pub name: String,
    pub columns: usize,
    /// Index of each key column on this side.
    pub key: Vec<usize>,
    pub key_fold: Vec<Fold>,
}

pub(crate) struct Compared {
    pub name: String,
    pub left: usize,
    pub right: usize,
    pub fold: Fold,
}

pub(crate) struct Plan {
    pub layout: Layout,
    pub schema: SchemaChanges,
    pub left: SidePlan,
    pub right: SidePlan,
    pub compared: Vec<Compared>,
    /// Whether every compared column has the same index on both sides.
    pub aligned: bool,
    pub tolerance: Option<f64>,
}

fn index_of(columns: &[String], input: &str) -> Result<HashMap<String, usize>, DataError> {
    let mut map = HashMap::new();
    for (i, c) in columns.iter().enumerate() {
        if map.insert(c.clone(), i).is_some() {
            return Err(DataError::new(input, "column named twice").in_column(c.clone()));
        }
    }
    Ok(map)
}

impl Plan {
    pub fn new(left: &dyn Source, right: &dyn Source, options: &DiffOptions) -> Result<Plan, DataError> {
        let (ln, rn) = (left.name().to_string(), right.name().to_string());
        let left_columns = left.columns().to_vec();
        let right_columns = right.columns().to_vec();
        // Left columns as named on the right.
        let mut renamed = left_columns.clone();
        let mut renames = HashMap::new();
        for (from, to) in &options.rename {
            let Some(i) = left_columns.iter().position(|c| c == from) else {
                return Err(DataError::new(&ln, "no such column to rename (left side)").in_column(from.clone()));
            };
            renamed[i] = to.clone();
            renames.insert(from.clone(), to.clone());
        }
        let left_index = index_of(&renamed, &ln)?;
        let right_index = index_of(&right_columns, &rn)?;
        // A name given in the options, as on the right; a renamed left
        // column's left name is accepted too.
        let resolve = |name: &String| -> String {
            if !left_index.contains_key(name) && !right_index.contains_key(name) {
                if let Some(to) = renames.get(name) {
                    return to.clone();
                }
            }
            name.clone()
        };
        if options.key.is_empty() {
            return Err(DataError::new(&ln, "no key columns given"));
        }
        let mut key_columns = Vec::new();
        for k in &options.key {
            let k = resolve(k);
            if !left_index.contains_key(&k) {
                return Err(DataError::new(&ln, "key column missing").in_column(k));
            }
            if !right_index.contains_key(&k) {
                return Err(DataError::new(&rn, "key column missing").in_column(k));
            }
            if key_columns.contains(&k) {
                return Err(DataError::new(&ln, "key column named twice").in_column(k));
            }
            key_columns.push(k);
        }
        let listed = |list: &[String], what: &str| -> Result<Vec<String>, DataError> {
            list.iter()
                .map(|c| {
                    let c = resolve(c);
                    if left_index.contains_key(&c) || right_index.contains_key(&c) {
                        Ok(c)
                    } else {
                        Err(DataError::new(format!("{ln} and {rn}"), format!("no such column ({what})")).in_column(c))
                    }
                })
                .collect()
        };
        let ignore = listed(&options.ignore, "ignored")?;
        let case = listed(&options.case_insensitive, "case-insensitive")?;
        let ws = listed(&options.whitespace_insensitive, "whitespace-insensitive")?;
        let fold = |c: &String| Fold {
            case: case.contains(c),
            whitespace: ws.contains(c),
        };
        if let Some(t) = options.numeric_tolerance {
            if !(t.is_finite() && t >= 0.0) {
                return Err(DataError::new(
                    &ln,
                    format!("numeric tolerance {t} is not a number ≥ 0"),
                ));
            }
        }
        let mut compared = Vec::new();
        for (li, name) in renamed.iter().enumerate() {
            if let Some(&ri) = right_index.get(name) {
                if !key_columns.contains(name) && !ignore.contains(name) {
                    compared.push(Compared {
                        name: name.clone(),
                        left: li,
                        right: ri,
                        fold: fold(name),
                    });
                }
            }
        }
        let common_left: Vec<String> = renamed
            .iter()
            .filter(|c| right_index.contains_key(*c))
            .cloned()
            .collect();
        let common_right: Vec<String> = right_columns
            .iter()
            .filter(|c| left_index.contains_key(*c))
            .cloned()
            .collect();
        let reordered = common_left != common_right;
        let schema = SchemaChanges {
            columns_added: right_columns
                .iter()
                .filter(|c| !left_index.contains_key(*c))
                .cloned()
                .collect(),
            columns_removed: renamed
                .iter()
                .filter(|c| !right_index.contains_key(*c))
                .cloned()
                .collect(),
            columns_renamed: options.rename.clone(),
            columns_reordered: reordered,
            left_order: if reordered { common_left } else { Vec::new() },
            right_order: if reordered { common_right } else { Vec::new() },
        };
        let side = |name: &str, index: &HashMap<String, usize>, columns: usize| SidePlan {
            name: name.to_string(),
            columns,
            key: key_columns.iter().map(|k| index[k]).collect(),
            key_fold: key_columns.iter().map(fold).collect(),
        };
        Ok(Plan {
            left: side(&ln, &left_index, left_columns.len()),
            right: side(&rn, &right_index, right_columns.len()),
            layout: Layout {
                left: ln,
                right: rn,
                left_columns,
                right_columns,
                compared_columns: compared.iter().map(|c| c.name.clone()).collect(),
                key_columns,
            },
            schema,
            aligned: compared.iter().all(|c| c.left == c.right),
            compared,
            tolerance: options.numeric_tolerance,
        })
    }
}
