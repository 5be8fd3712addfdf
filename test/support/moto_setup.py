"""Prepares a moto server with IAM enforcement the way a Connect AWS integration sees AWS: a principal
that may assume a role (Connect's side) and a role allowed S3 and rds-db:connect (the content's side).
Runs inside moto's INITIAL_NO_AUTH_ACTION_COUNT allowance (6 actions). Prints the principal's key as JSON."""
import json
import sys

import boto3

endpoint = sys.argv[1]
kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="AKIASETUP0000000000", aws_secret_access_key="setup")
iam = boto3.client("iam", **kw)
doc = lambda statement: json.dumps({"Version": "2012-10-17", "Statement": [statement]})
iam.create_user(UserName="connect-oidc")
iam.put_user_policy(UserName="connect-oidc", PolicyName="assume", PolicyDocument=doc({"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}))
key = iam.create_access_key(UserName="connect-oidc")["AccessKey"]
iam.create_role(RoleName="mlflow-content", AssumeRolePolicyDocument=doc({"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}))
iam.put_role_policy(RoleName="mlflow-content", PolicyName="storage", PolicyDocument=doc({"Effect": "Allow", "Action": ["s3:*", "rds-db:connect"], "Resource": "*"}))
boto3.client("s3", **kw).create_bucket(Bucket=sys.argv[2])
print(json.dumps({"accessKeyId": key["AccessKeyId"], "secretAccessKey": key["SecretAccessKey"], "roleArn": "arn:aws:iam::123456789012:role/mlflow-content"}))
