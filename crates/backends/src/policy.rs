//! IAM-style policy documents carrying grants, for the stores that evaluate them: a user's
//! document (an AWS inline user policy, a MinIO canned policy) and a bucket's (VersityGW's
//! bucket policy, naming each granted user as principal). Built with least privilege from one
//! definition of what each permission allows, and read back only when a document is exactly
//! what we would have written, so a policy edited by hand is rewritten or reported instead of
//! being trusted.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::model::{Grant, Permission};

/// Bucket-level actions (resource `arn:aws:s3:::B`).
fn bucket_actions(p: Permission) -> &'static [&'static str] {
    match p {
        Permission::ReadWrite => &["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
        Permission::ReadOnly => &["s3:GetBucketLocation", "s3:ListBucket"],
    }
}

/// Object-level actions (resource `arn:aws:s3:::B/*`).
fn object_actions(p: Permission) -> &'static [&'static str] {
    match p {
        Permission::ReadWrite => &[
            "s3:AbortMultipartUpload",
            "s3:DeleteObject",
            "s3:GetObject",
            "s3:ListMultipartUploadParts",
            "s3:PutObject",
        ],
        Permission::ReadOnly => &["s3:GetObject"],
    }
}

const PERMISSIONS: [Permission; 2] = [Permission::ReadWrite, Permission::ReadOnly];

/// The policy document for `grants` in the ARN `partition` (`aws` for MinIO and most of AWS),
/// or `None` when there is nothing to grant. One pair of statements per permission (bucket
/// actions, object actions), each naming all its buckets, sorted so the same grants always
/// give the same document. Never `s3:*`, ACL or bucket-policy actions. A bucket listed twice
/// keeps its strongest permission.
pub fn policy_document(partition: &str, grants: &[Grant]) -> Option<Value> {
    let by_bucket = normalise(grants);
    if by_bucket.is_empty() {
        return None;
    }
    let mut statements = Vec::new();
    for p in PERMISSIONS {
        let buckets: Vec<&String> = by_bucket.iter().filter(|(_, q)| **q == p).map(|(b, _)| b).collect();
        if buckets.is_empty() {
            continue;
        }
        let bucket_arns: Vec<String> = buckets.iter().map(|b| format!("arn:{partition}:s3:::{b}")).collect();
        let object_arns: Vec<String> = buckets.iter().map(|b| format!("arn:{partition}:s3:::{b}/*")).collect();
        statements.push(json!({"Effect": "Allow", "Action": bucket_actions(p), "Resource": bucket_arns}));
        statements.push(json!({"Effect": "Allow", "Action": object_actions(p), "Resource": object_arns}));
    }
    Some(json!({"Version": "2012-10-17", "Statement": statements}))
}

/// Grants sorted by bucket, one per bucket (ReadWrite wins over ReadOnly).
pub fn normalise(grants: &[Grant]) -> BTreeMap<String, Permission> {
    let mut out: BTreeMap<String, Permission> = BTreeMap::new();
    for g in grants {
        let entry = out.entry(g.bucket.clone()).or_insert(g.permission);
        if g.permission == Permission::ReadWrite {
            *entry = Permission::ReadWrite;
        }
    }
    out
}

/// Values of a field that may be a string or a list of strings (both are valid IAM JSON).
fn strings(v: Option<&Value>) -> Option<BTreeSet<String>> {
    match v? {
        Value::String(s) => Some(BTreeSet::from([s.clone()])),
        Value::Array(a) => a.iter().map(|x| x.as_str().map(str::to_string)).collect(),
        _ => None,
    }
}

/// The grants a policy document carries, or `None` when it holds anything
/// [`policy_document`] would not have written for `partition` (another effect, a condition,
/// other actions or resources). The document may come back reformatted or reordered.
pub fn grants_from_document(partition: &str, doc: &Value) -> Option<Vec<Grant>> {
    let arn_prefix = format!("arn:{partition}:s3:::");
    let statements = doc.get("Statement")?.as_array()?;
    let mut bucket_level: BTreeMap<String, Permission> = BTreeMap::new();
    let mut object_level: BTreeMap<String, Permission> = BTreeMap::new();
    for st in statements {
        let obj = st.as_object()?;
        if obj.keys().any(|k| !matches!(k.as_str(), "Effect" | "Action" | "Resource" | "Sid")) {
            return None;
        }
        if obj.get("Effect")?.as_str()? != "Allow" {
            return None;
        }
        let actions = strings(obj.get("Action"))?;
        let resources = strings(obj.get("Resource"))?;
        let set = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<BTreeSet<String>>();
        let (permission, objects) = PERMISSIONS.iter().find_map(|&p| {
            if actions == set(bucket_actions(p)) {
                Some((p, false))
            } else if actions == set(object_actions(p)) {
                Some((p, true))
            } else {
                None
            }
        })?;
        for r in resources {
            let rest = r.strip_prefix(arn_prefix.as_str())?;
            let (bucket, target) =
                if objects { (rest.strip_suffix("/*")?, &mut object_level) } else { (rest, &mut bucket_level) };
            if bucket.is_empty() || bucket.contains(['/', '*']) {
                return None;
            }
            if target.insert(bucket.to_string(), permission).is_some() {
                return None;
            }
        }
    }
    // Each bucket needs both halves with the same permission, as written.
    if bucket_level != object_level {
        return None;
    }
    Some(bucket_level.into_iter().map(|(bucket, permission)| Grant { bucket, permission }).collect())
}

/// The bucket policy granting `principals` (user name → permission) on `bucket`, or `None`
/// when nobody is granted. One pair of statements per permission (bucket actions, object
/// actions), each naming all its principals, sorted so the same grants always give the same
/// document; the same actions as [`policy_document`]. Never a wildcard principal.
pub fn bucket_policy_document(bucket: &str, principals: &BTreeMap<String, Permission>) -> Option<Value> {
    let mut statements = Vec::new();
    for p in PERMISSIONS {
        let who: Vec<&String> = principals.iter().filter(|(_, q)| **q == p).map(|(u, _)| u).collect();
        if who.is_empty() {
            continue;
        }
        let principal = json!({"AWS": who});
        statements.push(json!({"Effect": "Allow", "Principal": principal, "Action": bucket_actions(p),
            "Resource": [format!("arn:aws:s3:::{bucket}")]}));
        statements.push(json!({"Effect": "Allow", "Principal": principal, "Action": object_actions(p),
            "Resource": [format!("arn:aws:s3:::{bucket}/*")]}));
    }
    (!statements.is_empty()).then(|| json!({"Version": "2012-10-17", "Statement": statements}))
}

/// The principals a bucket policy grants and how, or `None` when the document holds anything
/// [`bucket_policy_document`] would not have written for `bucket` (another effect, principal
/// form, action, resource or a condition): such a policy is someone else's.
pub fn principals_from_bucket_policy(bucket: &str, doc: &Value) -> Option<BTreeMap<String, Permission>> {
    let bucket_arn = format!("arn:aws:s3:::{bucket}");
    let object_arn = format!("{bucket_arn}/*");
    let mut bucket_level: BTreeMap<String, Permission> = BTreeMap::new();
    let mut object_level: BTreeMap<String, Permission> = BTreeMap::new();
    for st in doc.get("Statement")?.as_array()? {
        let obj = st.as_object()?;
        if obj.keys().any(|k| !matches!(k.as_str(), "Effect" | "Principal" | "Action" | "Resource" | "Sid")) {
            return None;
        }
        if obj.get("Effect")?.as_str()? != "Allow" {
            return None;
        }
        let principal = obj.get("Principal")?.as_object()?;
        if principal.keys().any(|k| k != "AWS") {
            return None;
        }
        let users = strings(principal.get("AWS"))?;
        if users.iter().any(|u| u.is_empty() || u == "*") {
            return None;
        }
        let actions = strings(obj.get("Action"))?;
        let resources = strings(obj.get("Resource"))?;
        let set = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<BTreeSet<String>>();
        let (permission, objects) = PERMISSIONS.iter().find_map(|&p| {
            if actions == set(bucket_actions(p)) && resources == BTreeSet::from([bucket_arn.clone()]) {
                Some((p, false))
            } else if actions == set(object_actions(p)) && resources == BTreeSet::from([object_arn.clone()]) {
                Some((p, true))
            } else {
                None
            }
        })?;
        let target = if objects { &mut object_level } else { &mut bucket_level };
        for u in users {
            if target.insert(u, permission).is_some() {
                return None;
            }
        }
    }
    // Each principal needs both halves with the same permission, as written.
    (bucket_level == object_level).then_some(bucket_level)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn g(bucket: &str, permission: Permission) -> Grant {
        Grant { bucket: bucket.into(), permission }
    }

    #[test]
    fn documents_round_trip_and_stay_least_privilege() {
        let grants = vec![g("b", Permission::ReadOnly), g("a", Permission::ReadWrite), g("b", Permission::ReadOnly)];
        let doc = policy_document("aws", &grants).unwrap();
        let text = doc.to_string();
        assert!(!text.contains("s3:*") && !text.contains("\"*\""), "{text}");
        assert_eq!(
            grants_from_document("aws", &doc).unwrap(),
            vec![g("a", Permission::ReadWrite), g("b", Permission::ReadOnly)]
        );
        assert!(policy_document("aws", &[]).is_none());
        assert_eq!(
            normalise(&[g("x", Permission::ReadOnly), g("x", Permission::ReadWrite)])["x"],
            Permission::ReadWrite
        );
    }

    #[test]
    fn reformatted_documents_are_recognised() {
        // MinIO answers with its own ordering and a single string where one value is left.
        let doc = json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::b/*"},
            {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"], "Resource": ["arn:aws:s3:::b"]},
        ]});
        assert_eq!(grants_from_document("aws", &doc).unwrap(), vec![g("b", Permission::ReadOnly)]);
    }

    #[test]
    fn foreign_or_widened_documents_are_not_trusted() {
        let widened = json!({"Statement": [
            {"Effect": "Allow", "Action": ["s3:*"], "Resource": ["arn:aws:s3:::b/*"]},
        ]});
        assert!(grants_from_document("aws", &widened).is_none());
        let half = json!({"Statement": [
            {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": ["arn:aws:s3:::b/*"]},
        ]});
        assert!(grants_from_document("aws", &half).is_none(), "object access without the bucket half");
        let conditioned = json!({"Statement": [
            {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": ["arn:aws:s3:::b/*"], "Condition": {}},
            {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"], "Resource": ["arn:aws:s3:::b"]},
        ]});
        assert!(grants_from_document("aws", &conditioned).is_none());
        let wildcard = json!({"Statement": [
            {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": ["arn:aws:s3:::*/*"]},
            {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"], "Resource": ["arn:aws:s3:::*"]},
        ]});
        assert!(grants_from_document("aws", &wildcard).is_none());
        let cn = policy_document("aws-cn", &[g("x", Permission::ReadWrite)]).unwrap();
        assert_eq!(grants_from_document("aws-cn", &cn).unwrap(), vec![g("x", Permission::ReadWrite)]);
        assert!(grants_from_document("aws", &cn).is_none(), "another partition's ARNs are not ours");
    }

    #[test]
    fn bucket_policies_round_trip_and_refuse_what_we_did_not_write() {
        let who = BTreeMap::from([
            ("app-a".to_string(), Permission::ReadWrite),
            ("app-b".to_string(), Permission::ReadWrite),
            ("reader".to_string(), Permission::ReadOnly),
        ]);
        let doc = bucket_policy_document("b", &who).unwrap();
        let text = doc.to_string();
        assert!(!text.contains("s3:*") && !text.contains("\"*\"") && !text.contains("Policy"), "{text}");
        assert_eq!(principals_from_bucket_policy("b", &doc).unwrap(), who);
        assert!(bucket_policy_document("b", &BTreeMap::new()).is_none());
        assert!(principals_from_bucket_policy("other", &doc).is_none(), "another bucket's document");

        let public = json!({"Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject"], "Resource": ["arn:aws:s3:::b/*"]},
        ]});
        assert!(principals_from_bucket_policy("b", &public).is_none());
        let star = json!({"Statement": [
            {"Effect": "Allow", "Principal": {"AWS": ["*"]}, "Action": ["s3:GetObject"], "Resource": ["arn:aws:s3:::b/*"]},
            {"Effect": "Allow", "Principal": {"AWS": ["*"]}, "Action": ["s3:ListBucket", "s3:GetBucketLocation"], "Resource": ["arn:aws:s3:::b"]},
        ]});
        assert!(principals_from_bucket_policy("b", &star).is_none(), "everyone is not a grant we write");
        let half = json!({"Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "u"}, "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::b/*"},
        ]});
        assert!(principals_from_bucket_policy("b", &half).is_none(), "object access without the bucket half");
        let deny = json!({"Statement": [
            {"Effect": "Deny", "Principal": {"AWS": "u"}, "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::b/*"},
        ]});
        assert!(principals_from_bucket_policy("b", &deny).is_none());
        let reformatted = json!({"Statement": [
            {"Principal": {"AWS": "u"}, "Resource": "arn:aws:s3:::b/*", "Action": "s3:GetObject", "Effect": "Allow"},
            {"Effect": "Allow", "Principal": {"AWS": ["u"]}, "Action": ["s3:ListBucket", "s3:GetBucketLocation"], "Resource": ["arn:aws:s3:::b"]},
        ]});
        assert_eq!(
            principals_from_bucket_policy("b", &reformatted).unwrap(),
            BTreeMap::from([("u".to_string(), Permission::ReadOnly)])
        );
    }
}
